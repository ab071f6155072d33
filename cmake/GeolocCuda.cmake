# The CUDA backend lives inside geoloc_core: kernels/*.cu and src/cuda/*.cpp implement the cuda::
# functions of include/geoloc/backend.hpp with the same signatures as the cpu:: ones.
file(GLOB _cuda_src CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cu ${PROJECT_SOURCE_DIR}/src/cuda/*.cpp)
target_sources(geoloc_core PRIVATE ${_cuda_src})
target_link_libraries(geoloc_core PUBLIC CUDA::cudart CUDA::cublas CUDA::cublasLt geoloc::cudnn)
target_include_directories(geoloc_core PRIVATE ${PROJECT_SOURCE_DIR}/kernels)
set_target_properties(geoloc_core PROPERTIES CUDA_SEPARABLE_COMPILATION OFF CUDA_RESOLVE_DEVICE_SYMBOLS ON)
target_compile_options(geoloc_core PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>)
# The public headers need C++20 (defaulted operator==) but CMake 3.25 knows no CUDA20 dialect flag for
# nvcc 13 ("requires the language dialect CUDA20"): cxx_std_20 on the target would ask for it, so the
# dialect property is cleared and the flag goes to nvcc directly.
set_property(TARGET geoloc_core PROPERTY CUDA_STANDARD)
set_property(TARGET geoloc_core PROPERTY CUDA_STANDARD_REQUIRED OFF)
target_compile_options(geoloc_core PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
