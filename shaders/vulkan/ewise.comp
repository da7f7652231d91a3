#version 450
// Element-wise ops on `count` elements of y (OP): 0 copy y = x; 1 add y += x; 2 broadcast add
// y[r·width + i] += a · x[i] (a bias with a = 1, a steering vector with a = its coefficient);
// 3 scale y *= a; 4 soft-cap y = a · tanh(y / a).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint OP = 0;
layout(std430, binding = 0) readonly buffer XBuf { float X[]; };
layout(std430, binding = 1) buffer YBuf { float Y[]; };
layout(push_constant) uniform Push { uint xOff, yOff, count, width; float a; } p;
void main() {
    uint i = group_index() * 256u + gl_LocalInvocationID.x;
    if (i >= p.count) return;
    uint y = p.yOff + i;
    if (OP == 0u) Y[y] = X[p.xOff + i];
    else if (OP == 1u) Y[y] += X[p.xOff + i];
    else if (OP == 2u) Y[y] += p.a * X[p.xOff + i % p.width];
    else if (OP == 3u) Y[y] *= p.a;
    else Y[y] = p.a * tanh_fp32(Y[y] / p.a);
}
