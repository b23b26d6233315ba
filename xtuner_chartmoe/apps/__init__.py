"""The apps on a trained model: the web demo and the lmms-eval model
(with its tasks)."""
