"""A running Triton: what a launch is told, typed once (`settings`: ServerSettings, TritonFlags), launched,
reached and stopped (`launcher`: serve() picks the kind and guards TensorRT plans; `endpoints`: the launch request,
ports, readiness and what the log says; `server_process`: dying with the parent, exit reasons, stopping; the kinds
`embedded`, `docker_server` and `remote_server`; `front_exposure`: loopback or exposed, replicas behind nginx), kept
alive (`supervision`), run without root (`privileges`), fronted by nginx that passes only inference and refuses what
would crash it (`guard`): its settings (`front_settings`), its nginx.conf (`front_conf`, `front_rules`, written in
`nginx_syntax`) and the nginx process, run and watched (`balancer`); talked to over HTTP, JSON and gRPC
(`served_model`), and asked to classify one image (`classify`).
"""
