import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# PyAV's FFmpeg before decord's: decord bundles its own libavcodec, and loaded first it shadows
# PyAV's, which then cannot open encoders such as libvpx-vp9 (the SSv2 .webm tests write VP9) in
# any test that runs after one that imported decord.
try:
    import av  # noqa: F401
except ImportError:
    pass


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'sweep: runs every shipped video / dense config through tools/train.py and '
        'tools/test.py (minutes); -m "not sweep" leaves them out of a quick run')
