// Operator schemas of the mmlgc::* custom ops. The forward ops' CPU kernels
// are C++ (cpu/, registered in group_conv.cpp), their CUDA kernels Triton
// (mmlgc/ops/triton_kernels/, registered in mmlgc/ops/cuda_kernels.py); the
// backward ops are device-generic ATen code. Autograd and fake (meta)
// kernels are registered in Python (mmlgc/ops/*.py), next to each op's
// façade.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(mmlgc, m) {
  // Output group g (channels [g*O/G, (g+1)*O/G), or with `interleaved` the
  // channels o with o % G == g: a channel shuffle folded into the output
  // order) of sample n is the conv of input[n] * mask[n, g] with those
  // weight rows; out_mask [N, O] (optional) marks the output channels to
  // compute, the others are zero. Only active (input, output) channel pairs
  // are computed.
  m.def(
      "dynamic_group_conv(Tensor input, Tensor weight, Tensor? bias, "
      "Tensor mask, Tensor? out_mask, int[2] stride, int[2] padding, "
      "int[2] dilation, bool interleaved=False) -> Tensor");
  m.def(
      "dynamic_group_conv_backward(Tensor grad_out, Tensor input, "
      "Tensor weight, Tensor mask, Tensor? out_mask, int[2] stride, "
      "int[2] padding, int[2] dilation, bool[3] output_mask, "
      "bool interleaved=False) -> (Tensor, Tensor, Tensor)");
  // Static groups of unequal sizes: group g reads the in_sizes[g] input
  // channels listed next in in_index (sets may overlap) and writes the next
  // out_sizes[g] output channels; weight packs each group's
  // [out_sizes[g], in_sizes[g], kh, kw] block, flattened, in group order.
  m.def(
      "ragged_group_conv(Tensor input, Tensor weight, Tensor? bias, "
      "Tensor in_index, int[] in_sizes, int[] out_sizes, int[2] kernel_size, "
      "int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
  m.def(
      "ragged_group_conv_backward(Tensor grad_out, Tensor input, "
      "Tensor weight, Tensor in_index, int[] in_sizes, int[] out_sizes, "
      "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // y = max(scale[c] * input + shift[c], 0) and its mean over H, W ([N, C]),
  // in one pass: an eval BN -> ReLU -> global average pool (DGC's
  // pre-activation and its saliency generators' input); y is returned at
  // every stride-th row and column (what a strided 1x1 conv reads), the
  // mean is over all of it. CPU only; other devices and autograd take the
  // composite in mmlgc/ops/affine_relu.py.
  m.def(
      "affine_relu_mean(Tensor input, Tensor scale, Tensor shift, "
      "int[2] stride=[1, 1]) -> (Tensor, Tensor)");
}

// `import mmlgc._ext` loads this library and thereby registers the ops; the
// module itself exposes nothing.
extern "C" {
PyObject* PyInit__ext(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_ext",
                                          nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
