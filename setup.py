"""vpetl_mm: parameter-efficient transfer learning for OpenMMLab toolboxes."""
from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open('vpetl_mm/version.py') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='vpetl_mm',
    version=read_version(),
    description='Parameter-efficient transfer learning (PEFT) for MMPretrain, MMAction2, '
    'MMSegmentation and MMDetection',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools', 'tools.*')),
    # the configs and tools ship as package data under vpetl_mm/.mim/ (symlinks to the
    # repository's folders, copied into a wheel), as the OpenMMLab toolboxes ship theirs: an
    # installed vpetl_mm resolves `_base_ = ['vpetl_mm::vtab/...']` and `mim train vpetl_mm`
    package_data={'vpetl_mm': ['.mim/model-index.yml', '.mim/configs/**/*.py',
                               '.mim/tools/**/*.py', '.mim/tools/**/*.sh']},
    python_requires='>=3.10',
    install_requires=['mmengine>=0.10.6,<1.0', 'torch>=2.1'],
    license='Apache-2.0',
)
