"""A running Triton: what a launch is told, typed once (`settings`: ServerSettings, TritonFlags), launched,
reached and stopped (`launcher`: endpoints and server kinds), kept alive (`supervision`), fronted by nginx
(`balancer`) that refuses what would crash it (`guard`), and talked to over HTTP, JSON and gRPC (`served_model`).
"""
