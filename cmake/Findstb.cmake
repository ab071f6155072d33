# Finds stb (Debian: libstb-dev, which ships the headers and libstb.so with the implementations); defines geoloc::stb.
find_path(STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
find_library(STB_LIBRARY stb)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(stb DEFAULT_MSG STB_LIBRARY STB_INCLUDE_DIR)
if(stb_FOUND AND NOT TARGET geoloc::stb)
  add_library(geoloc::stb UNKNOWN IMPORTED)
  set_target_properties(geoloc::stb PROPERTIES IMPORTED_LOCATION ${STB_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${STB_INCLUDE_DIR})
endif()
