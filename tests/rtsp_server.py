#!/usr/bin/python3
"""A real RTSP server for cin's live-source tests: GStreamer's gst-rtsp-server serving one H.264
clip (already encoded, so nothing is re-encoded) at rtsp://127.0.0.1:PORT/clip in real time; the
stream ends with the clip, the server when it is killed.
Usage: rtsp_server.py PORT CLIP.mp4; prints "ready" once it listens."""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    port, clip = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # one pipeline shared by every client; qtdemux gives H.264 as it is stored in the file
    factory.set_launch(f'( filesrc location="{clip}" ! qtdemux ! h264parse config-interval=-1 '
                       '! rtph264pay name=pay0 pt=96 )')
    factory.set_shared(True)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp_server.py: cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


main()
