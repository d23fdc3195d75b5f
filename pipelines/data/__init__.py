"""What models are fed: MNIST as the pipeline stores it (`digits`), images to tensors the way torchvision
evaluates (`images`, shared by the client and the ensemble's Python step) and the inputs exports and parity
feed a model (`parity_inputs`).
"""
