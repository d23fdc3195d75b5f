"""What models are fed and what their answers are called: MNIST as the pipeline stores it (`digits`) and where
it comes from (`mnist_sources`), images to tensors the way torchvision evaluates (`images`, shared by the client
and the ensemble's Python step) and a network's pre-processing checked against torchvision's own
(`preprocessing_audit`), the inputs exports and parity feed a model (`parity_inputs`), and class names: the labels
file and its audit (`labels`).
"""
