"""Media I/O: decoding video frames, the one resize, writing mp4/GIF/image files."""
