"""The LLVM CPU backend: tile IR to LLVM IR (llvmlite), compiled for the host CPU and run on
a pool of threads. See ``backend.py``; llvmlite is imported only when a kernel is compiled."""
