// The host emulation's launcher: every kernel of gpu-shim/kernels/ compiled as C++ (through
// cuda_host.h) and `hs_emu_launch`, which runs a grid block by block, each block's threads as
// ucontext coroutines on the calling OS thread, switching at __syncthreads.
#include "cuda_host.h"

#include "../kernels/adam.cu"
#include "../kernels/layers.cu"
#include "../kernels/loss.cu"
#include "../kernels/scaler.cu"

#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <tuple>
#include <utility>
#include <vector>

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

constexpr size_t kStack = 32 * 1024;

struct Block {
  ucontext_t scheduler;
  std::vector<ucontext_t> threads;
  std::vector<char> shared;
  std::vector<unsigned char> done;
  unsigned current = 0;
  bool coroutines = false;
  const char* name = nullptr;
  void (*body)(void**) = nullptr;
  void** args = nullptr;
};

// Coroutine stacks, kept between launches (a block needs one per thread).
thread_local std::vector<char> stacks;

thread_local Block* block = nullptr;

void thread_main() {
  block->body(block->args);
  block->done[block->current] = 1;
  // Returning resumes uc_link: the scheduler.
}

template <typename... A>
constexpr size_t arity(void (*)(A...)) {
  return sizeof...(A);
}

// Calls `k` with the launch's parameters, each read from the pointer the driver passes.
template <typename... A, size_t... I>
void call(void (*k)(A...), void** args, std::index_sequence<I...>) {
  k(*static_cast<A*>(args[I])...);
}

// The entry point of kernel K: its parameters read from `args` (types from K's signature).
template <auto K>
void run_kernel(void** args) {
  call(K, args, std::make_index_sequence<arity(K)>{});
}

struct Entry {
  const char* name;
  void (*run)(void**);
  // Calls __syncthreads: its threads run as coroutines; the others as plain calls, one after
  // the other (a barrier there aborts with the kernel's name).
  bool barrier;
};

#define KERNEL(name) Entry{#name, &run_kernel<&name>, false}
#define KERNEL_WITH_BARRIER(name) Entry{#name, &run_kernel<&name>, true}

const Entry* find(const char* name) {
  static const Entry table[] = {
      KERNEL(adam_step),         KERNEL(cast_f32_f16),        KERNEL(gather_rows),
      KERNEL_WITH_BARRIER(conv2d_fwd),        KERNEL(conv2d_bwd_params_part), KERNEL(sum_groups_round),
      KERNEL(conv2d_bwd_input),  KERNEL(maxpool2_relu_fwd),   KERNEL(maxpool2_bwd),
      KERNEL(relu_fwd),          KERNEL(relu_bwd),            KERNEL(linear_fwd),
      KERNEL(linear_bwd_input),  KERNEL(linear_bwd_params),   KERNEL_WITH_BARRIER(log_softmax_nll),
      KERNEL(log_softmax_nll_bwd), KERNEL(eval_stats),        KERNEL(unscale_check),
      KERNEL(step_finish),
  };
  for (const Entry& e : table)
    if (strcmp(e.name, name) == 0) return &e;
  return nullptr;
}

}  // namespace

void* hs_emu_shared() { return block->shared.data(); }

void __syncthreads() {
  if (!block->coroutines) {
    fprintf(stderr, "emulation: kernel %s calls __syncthreads; list it with KERNEL_WITH_BARRIER\n",
            block->name);
    abort();
  }
  // Back to the scheduler, which resumes the next thread; this one continues in the next round.
  swapcontext(&block->threads[block->current], &block->scheduler);
}

// Runs kernel `name` over grid (gx, gy) of blocks of `bx` threads with `shared` bytes of shared
// memory; `args[i]` points at parameter i. Returns 0, or 1 for an unknown kernel.
extern "C" int hs_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned bx,
                             unsigned shared, void** args) {
  const Entry* e = find(name);
  if (!e) return 1;
  Block b;
  b.name = e->name;
  b.body = e->run;
  b.args = args;
  b.coroutines = e->barrier;
  b.shared.assign(shared + 16, 0);
  Block* saved = block;
  block = &b;
  gridDim = dim3{gx, gy, 1};
  blockDim = dim3{bx, 1, 1};
  if (b.coroutines) {
    b.threads.resize(bx);
    b.done.resize(bx);
    if (stacks.size() < bx * kStack) stacks.resize(bx * kStack);
  }
  for (unsigned y = 0; y < gy; ++y) {
    for (unsigned x = 0; x < gx; ++x) {
      blockIdx = dim3{x, y, 1};
      if (!b.coroutines) {
        for (unsigned t = 0; t < bx; ++t) {
          threadIdx = dim3{t, 0, 0};
          b.body(args);
        }
        continue;
      }
      for (unsigned t = 0; t < bx; ++t) {
        getcontext(&b.threads[t]);
        b.threads[t].uc_stack.ss_sp = stacks.data() + t * kStack;
        b.threads[t].uc_stack.ss_size = kStack;
        b.threads[t].uc_link = &b.scheduler;
        makecontext(&b.threads[t], thread_main, 0);
        b.done[t] = 0;
      }
      // Rounds: every unfinished thread runs to its next barrier or its end.
      for (bool live = true; live;) {
        live = false;
        for (unsigned t = 0; t < bx; ++t) {
          if (b.done[t]) continue;
          b.current = t;
          threadIdx = dim3{t, 0, 0};
          swapcontext(&b.scheduler, &b.threads[t]);
          live = live || !b.done[t];
        }
      }
    }
  }
  block = saved;
  return 0;
}
