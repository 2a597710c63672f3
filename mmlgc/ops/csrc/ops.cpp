// Operator schemas of the mmlgc::* custom ops. Kernels are registered per
// device in cpu/ and cuda/; autograd and fake (meta) kernels in Python
// (mmlgc/ops/*.py), next to each op's façade.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(mmlgc, m) {
  // out[n, k] = input[n, index[n, k]]; duplicates in index are allowed.
  m.def("gather_channels(Tensor input, Tensor index) -> Tensor");
  // grad_input[n, c] = sum over k with index[n, k] == c of grad[n, k].
  m.def(
      "gather_channels_backward(Tensor grad, Tensor index, SymInt channels) "
      "-> Tensor");
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
