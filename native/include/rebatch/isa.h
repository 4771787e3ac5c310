// Which kernel implementation runs: detected once, overridable by REBATCH_ISA.
#pragma once

namespace rebatch {

struct KernelTable;

// The kernels in use. The first call selects them: REBATCH_ISA=scalar|avx2|neon
// when set and supported by this CPU and build, else the best supported one.
const KernelTable& activeKernels();
const char* activeIsa();
// A note on the selection when REBATCH_ISA asked for something unavailable, else "".
const char* isaNote();
// Whether `name` is compiled in and supported by this CPU.
bool isaSupported(const char* name);
// Switches kernels; false (and no change) when `name` is not supported here.
bool selectIsa(const char* name);

}  // namespace rebatch
