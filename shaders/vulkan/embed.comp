#version 450
// Embedding rows gathered from the table in its stored blocks: out[r, k] = W[tokens[r], k] (· scale).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer WBuf { uint W[]; };
layout(std430, binding = 1) readonly buffer TBuf { uint T[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float Y[]; };
layout(push_constant) uniform Push { uint tOff, yOff, rows, width, rowBytes, hasScale, firstRow, partRows; float scale; } p;
#include "dequant.glsl"
void main() {
    uint i = group_index() * 256u + gl_LocalInvocationID.x;
    if (i >= p.rows * p.width) return;
    uint r = i / p.width, k = i - r * p.width;
    uint t = T[p.tOff + r];
    // A table split into parts (the device's buffer range) is gathered part by part.
    if (t < p.firstRow || t - p.firstRow >= p.partRows) return;
    float v = wload((t - p.firstRow) * p.rowBytes, k);
    Y[p.yOff + i] = p.hasScale != 0u ? v * p.scale : v;
}
