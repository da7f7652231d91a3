#version 450
// Rotate-half RoPE in place on `heads` heads of headDim per row, from cos/sin tables [rows, half]
// computed on the host in fp32 exactly as the CPU backend computes them.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer XBuf { float X[]; };
layout(std430, binding = 1) readonly buffer CBuf { float C[]; };
layout(std430, binding = 2) readonly buffer SBuf { float S[]; };
layout(push_constant) uniform Push { uint xOff, cOff, sOff, rows, heads, headDim, rowStride; } p;
void main() {
    uint half_ = p.headDim / 2u;
    uint i = group_index() * 256u + gl_LocalInvocationID.x;
    if (i >= p.rows * p.heads * half_) return;
    uint r = i / (p.heads * half_), rem = i - r * p.heads * half_;
    uint h = rem / half_, j = rem - h * half_;
    uint v = p.xOff + r * p.rowStride + h * p.headDim;
    float c = C[p.cOff + r * half_ + j], s = S[p.sOff + r * half_ + j];
    float a = X[v + j], b = X[v + j + half_];
    precise float ac = a * c, bs = b * s, bc = b * c, as_ = a * s;
    X[v + j] = ac - bs;
    X[v + j + half_] = bc + as_;
}
