"""The Triton backend: tile IR to the Python source of a ``@triton.jit`` kernel, run natively
on CUDA or under Triton's interpreter on the CPU, and compiled ahead of time for sm_80/sm_90
without a GPU. See ``backend.py`` (running), ``codegen.py`` (the generated module) and
``aot.py``; triton and torch are imported only when a kernel is compiled or launched."""
