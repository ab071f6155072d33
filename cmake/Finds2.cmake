# Finds s2geometry (Debian: libs2-dev) and its Abseil dependencies; defines geoloc::s2.
find_path(S2_INCLUDE_DIR s2/s2cell_id.h)
find_library(S2_LIBRARY s2)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(s2 DEFAULT_MSG S2_LIBRARY S2_INCLUDE_DIR)
if(s2_FOUND AND NOT TARGET geoloc::s2)
  add_library(geoloc::s2 UNKNOWN IMPORTED)
  set_target_properties(geoloc::s2 PROPERTIES IMPORTED_LOCATION ${S2_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${S2_INCLUDE_DIR})
  # s2's headers use Abseil; link the pieces its headers call inline
  foreach(_absl absl_hash absl_raw_hash_set absl_strings absl_str_format_internal absl_throw_delegate absl_city absl_low_level_hash absl_raw_logging_internal absl_base absl_int128)
    find_library(_lib_${_absl} ${_absl})
    if(_lib_${_absl})
      set_property(TARGET geoloc::s2 APPEND PROPERTY INTERFACE_LINK_LIBRARIES ${_lib_${_absl}})
    endif()
  endforeach()
endif()
