#version 450
// gate[i] ← act(gate[i]) · up[i]: SiLU, GELU (tanh approximation) or exact GELU (ACT 0, 1, 2).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint ACT = 0;
layout(std430, binding = 0) buffer GBuf { float G[]; };
layout(std430, binding = 1) readonly buffer UBuf { float U[]; };
layout(push_constant) uniform Push { uint gOff, uOff, count, gStride, uStride, width; } p;

// erf in fp32 (Abramowitz–Stegun 7.1.26 is too coarse; this is W. J. Cody's rational form
// through erfc's continued-fraction region, |error| < 2e-7 absolute).
float erf_fp32(float x) {
    float a = abs(x);
    float r;
    if (a < 0.5) {
        float t = x * x;
        r = a * (1.128379165726710 + t * (-0.376126389031836 + t * (0.112837916709551 + t * (-0.026866170645131
            + t * (0.005223977625442 - t * 0.000854161)))));
    } else {
        // erfc(a) = exp(−a²) · P(1/(1 + p·a)), Numerical Recipes' erfcc (fractional error < 1.2e-7).
        float t = 1.0 / (1.0 + 0.5 * a);
        float y = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
            + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        r = 1.0 - y;
    }
    return x < 0.0 ? -r : r;
}

void main() {
    uint i = group_index() * 256u + gl_LocalInvocationID.x;
    if (i >= p.count) return;
    uint r = i / p.width, c = i - r * p.width;
    uint gi = p.gOff + r * p.gStride + c, ui = p.uOff + r * p.uStride + c;
    float g = G[gi], u = U[ui];
    float a;
    if (ACT == 0u) {
        a = g / (1.0 + exp(-g));
    } else if (ACT == 1u) {
        float t = tanh_fp32(0.7978845608028654 * (g + 0.044715 * g * g * g));
        a = 0.5 * g * (1.0 + t);
    } else {
        a = 0.5 * g * (1.0 + erf_fp32(g * 0.7071067811865476));
    }
    G[gi] = a * u;
}
