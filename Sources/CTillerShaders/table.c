// Accessors for the generated table in shaders.c.
#include "CTillerShaders.h"

const TillerShader *tiller_shader_at(int i) { return &tiller_shaders[i]; }
const char *tiller_shaders_fingerprint_string(void) { return tiller_shaders_fingerprint; }
int tiller_shaders_count(void) { return tiller_shader_count; }
