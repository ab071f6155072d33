# BUILD_SHARED_LIBS=ON: libgeoloc.so, one shared library from every component's sources, exporting only
# geoloc's own symbols (the public API: namespace geoloc, and the type information of its classes, so that
# geoloc::Error and its subclasses can be caught across the boundary). nlohmann-json, Eigen, s2geometry, Abseil, stb,
# libjpeg-turbo, libarchive, msgpack-cxx, FAISS and the standard-library instantiations stay inside: the version script cmake/geoloc.map makes every other
# symbol local (hidden). (Not -fvisibility=hidden: the public headers carry no export annotations, and a
# hidden symbol cannot be exported by the version script.)
if(GEOLOC_HAS_CUDA)
  message(FATAL_ERROR "BUILD_SHARED_LIBS=ON is not supported with the CUDA backend yet; configure with GEOLOC_CUDA=OFF")
endif()
get_property(_geoloc_sources GLOBAL PROPERTY GEOLOC_LIBRARY_SOURCES)
add_library(geoloc SHARED ${_geoloc_sources})
set_target_properties(geoloc PROPERTIES OUTPUT_NAME geoloc VERSION ${PROJECT_VERSION}
                      SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
                      LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/geoloc.map)
target_include_directories(geoloc PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>)
target_include_directories(geoloc PRIVATE ${PROJECT_SOURCE_DIR}/src)  # internal headers, as for the components
target_compile_features(geoloc PUBLIC cxx_std_20)
# the public headers have no third-party types (scripts/check-public-headers.sh): every dependency is private
target_link_libraries(geoloc PUBLIC Threads::Threads
                      PRIVATE nlohmann_json::nlohmann_json Eigen3::Eigen geoloc::s2 geoloc::stb
                              libjpeg-turbo::turbojpeg LibArchive::LibArchive ZLIB::ZLIB ${CMAKE_DL_LIBS})
# what geoloc_image sets: msgpack-cxx header-only, without Boost
target_include_directories(geoloc PRIVATE ${MSGPACK_CXX_INCLUDE_DIR})
target_compile_definitions(geoloc PRIVATE MSGPACK_NO_BOOST)
# what geoloc_core sets on its sources
target_compile_options(geoloc PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fopenmp-simd>)
target_compile_definitions(geoloc PRIVATE GEOLOC_VERSION_STRING="${PROJECT_VERSION}"
                           GEOLOC_BUILD_ARCH="${GEOLOC_ARCH_FLAGS}")
if(GEOLOC_X86_KERNELS)
  target_compile_definitions(geoloc PRIVATE GEOLOC_X86_KERNELS=1)
endif()
# what geoloc_comm sets: MPI's C API, privately (NCCL needs CUDA, which this build has not)
target_compile_definitions(geoloc PRIVATE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
if(GEOLOC_HAS_MPI)
  target_compile_definitions(geoloc PRIVATE GEOLOC_HAS_MPI=1)
  target_link_libraries(geoloc PRIVATE MPI::MPI_CXX)
endif()
if(GEOLOC_HAS_FAISS)  # what geoloc_pipeline sets: FAISS (static, PIC) inside, its symbols local like the others
  target_link_libraries(geoloc PRIVATE faiss)
  target_compile_definitions(geoloc PRIVATE GEOLOC_HAS_FAISS=1)
endif()
target_link_options(geoloc PRIVATE "LINKER:--version-script=${PROJECT_SOURCE_DIR}/cmake/geoloc.map"
                    "LINKER:--no-undefined")
geoloc_warnings(geoloc)
geoloc_optimise(geoloc)
