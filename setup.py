"""Builds mmlgc and its compiled ops, ``mmlgc._ext``: the op schemas, the
C++ CPU kernels and the device-generic backward. No CUDA toolkit is needed:
the GPU kernels are Triton (``mmlgc/ops/triton_kernels``), compiled by
triton at their first use on a GPU. The C++ standard is left to torch's
``BuildExtension`` (C++20 for torch 2.14). Build with
``pip install -e . --no-build-isolation`` so the extension is compiled
against the torch already installed.
"""
import glob
import os.path as osp

from setuptools import find_packages, setup

CSRC = osp.join('mmlgc', 'ops', 'csrc')


def read_version():
    scope = {}
    with open(osp.join('mmlgc', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name):
    with open(osp.join('requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line and not line.startswith('-')]


def make_extensions():
    from torch.utils.cpp_extension import CppExtension
    sources = sorted(
        glob.glob(osp.join(CSRC, '*.cpp')) +
        glob.glob(osp.join(CSRC, 'cpu', '*.cpp')))
    # at::parallel_for is a header template over `#pragma omp parallel`:
    # without -fopenmp it silently runs on one thread. The runtime resolves
    # to the libgomp.so.1 torch has already loaded.
    extra_compile_args = {'cxx': ['-O3', '-fopenmp']}
    extra_link_args = ['-fopenmp']
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
