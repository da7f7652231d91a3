// Shared by every Tiller compute shader. Buffers are bound whole; element offsets come in push
// constants, so a BufferSlice never needs an aligned descriptor offset.
#extension GL_EXT_control_flow_attributes : enable

// Dispatches wider than 65535 groups (a vocabulary's rows) spread over y; this is the group's
// index in the flattened grid.
uint group_index() { return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; }

// tanh through exp, saturated so that large |u| gives ±1 instead of inf/inf.
float tanh_fp32(float u) {
    float a = min(abs(u), 15.0);
    float e = exp(2.0 * a);
    float t = 1.0 - 2.0 / (e + 1.0);
    return u < 0.0 ? -t : t;
}
