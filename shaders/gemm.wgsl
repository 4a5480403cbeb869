// gemm: placeholder
