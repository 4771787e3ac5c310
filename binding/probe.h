// Exports of the memory-bandwidth probes (native/include/rebatch/probe.h).
#pragma once
#include <napi.h>

namespace rebatch_binding {

// probeRead(x) -> checksum; probeCopy(x, y, stream); probeTriad(a, b, out, stream).
void registerProbes(Napi::Env env, Napi::Object exports);

}  // namespace rebatch_binding
