"""Runtime backends: the layer that owns a model handle inside a runner process.

``rkio.runtime.base`` defines the backend-neutral interface; ``rkio.runtime.rkllm`` binds librkllmrt.so
(every ABI generation), ``rkio.runtime.llamacpp`` runs GGUF models on the CPU.
"""
