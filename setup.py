"""Builds mmlgc and its compiled ops, ``mmlgc._ext``.

C++ CPU kernels are always built. CUDA kernels are built when torch is a CUDA
build and nvcc is found, or when ``FORCE_CUDA=1``; ``FORCE_CUDA=0`` skips them.
The C++ standard is left to torch's ``BuildExtension`` (C++20 for torch 2.14).
Build with ``pip install -e . --no-build-isolation`` so the extension is
compiled against the torch already installed.
"""
import glob
import os
import os.path as osp

from setuptools import find_packages, setup

CSRC = osp.join('mmlgc', 'ops', 'csrc')
# Built when no GPU is visible to detect the architecture from (CI, login
# nodes); PTX keeps it usable on newer GPUs. Override with TORCH_CUDA_ARCH_LIST.
DEFAULT_CUDA_ARCH_LIST = '8.0+PTX'


def read_version():
    scope = {}
    with open(osp.join('mmlgc', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name):
    with open(osp.join('requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith('-')]


def want_cuda():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME
    force = os.getenv('FORCE_CUDA')
    if force is not None:
        return force == '1'
    return torch.version.cuda is not None and CUDA_HOME is not None


def cuda_build_paths():
    """Headers torch's own CUDA wheels ship (``nvidia/cu*/include``, e.g.
    ``cusparse.h``, which a bare toolkit may lack) and the toolkit directory
    holding ``libcudart.so``. ``CUDA_HOME`` as torch infers it can be wrong
    when ``nvcc`` on PATH is a wrapper script (``/usr/local/bin/nvcc`` gives
    ``/usr/local``), so the usual toolkit roots are searched too."""
    import torch
    from torch.utils.cpp_extension import CUDA_HOME
    site = osp.dirname(osp.dirname(torch.__file__))
    include_dirs = sorted(glob.glob(osp.join(site, 'nvidia', 'cu*', 'include')))
    roots = [CUDA_HOME, os.getenv('CUDA_HOME'), '/usr/local/cuda']
    library_dirs = []
    for root in filter(None, roots):
        for sub in ('lib64', 'lib'):
            lib = osp.join(root, sub)
            if (osp.isfile(osp.join(lib, 'libcudart.so'))
                    and lib not in library_dirs):
                library_dirs.append(lib)
    if not library_dirs:
        raise RuntimeError(
            'Building the CUDA ops: libcudart.so not found under '
            f'{[r for r in roots if r]}. Set CUDA_HOME to the CUDA toolkit, '
            'or FORCE_CUDA=0 to build the CPU ops only.')
    return include_dirs, library_dirs


def make_extensions():
    from torch.utils.cpp_extension import CppExtension, CUDAExtension
    sources = sorted(
        glob.glob(osp.join(CSRC, '*.cpp')) +
        glob.glob(osp.join(CSRC, 'cpu', '*.cpp')))
    # at::parallel_for is a header template over `#pragma omp parallel`:
    # without -fopenmp it silently runs on one thread. The runtime resolves
    # to the libgomp.so.1 torch has already loaded.
    extra_compile_args = {'cxx': ['-O3', '-fopenmp']}
    extra_link_args = ['-fopenmp']
    if want_cuda():
        import torch
        if not torch.cuda.is_available():
            os.environ.setdefault('TORCH_CUDA_ARCH_LIST',
                                  DEFAULT_CUDA_ARCH_LIST)
        include_dirs, library_dirs = cuda_build_paths()
        extra_compile_args['nvcc'] = ['-O3']
        return [
            CUDAExtension(
                'mmlgc._ext',
                sources + sorted(glob.glob(osp.join(CSRC, 'cuda', '*.cu'))),
                include_dirs=include_dirs,
                library_dirs=library_dirs,
                define_macros=[('MMLGC_WITH_CUDA', None)],
                extra_compile_args=extra_compile_args,
                extra_link_args=extra_link_args)
        ]
    return [
        CppExtension(
            'mmlgc._ext',
            sources,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args)
    ]


def get_cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {'build_ext': BuildExtension.with_options(use_ninja=True)}


setup(
    name='mmlgc',
    version=read_version(),
    description='Learnable grouped convolutions for OpenMMLab detection and '
    'classification',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    include_package_data=True,
    python_requires='>=3.10',
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    ext_modules=make_extensions(),
    cmdclass=get_cmdclass(),
    zip_safe=False,
)
