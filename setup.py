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
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.10',
    install_requires=['mmengine>=0.10.6,<1.0', 'torch>=2.1'],
    license='Apache-2.0',
)
