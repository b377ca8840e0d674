"""Video files for the tests, written with PyAV."""
import numpy as np


def write_video(path, size=(48, 64), frames=12, codec='mpeg4', seed=0):
    """A video of ``frames`` random ``size = (height, width)`` frames at 8 fps (``codec``:
    MPEG-4 part 2 in .mp4 by default, ``libvpx-vp9`` for SSv2's .webm). decord 0.6 mis-reads
    small portrait frames: keep ``width >= height``."""
    import av
    rng = np.random.RandomState(seed)
    h, w = size
    with av.open(str(path), 'w') as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = w, h, 'yuv420p'
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(
                rng.randint(0, 256, (h, w, 3), dtype=np.uint8), format='rgb24')
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
