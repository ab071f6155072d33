// stb_image's implementation, compiled into fuzz_image (GEOLOC_FUZZ_INSTRUMENT_STB=ON) so that the fuzzer
// sees its coverage and the sanitizers check it; from the same header as the system's libstb.so.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
