"""A real RTSP server for tests: GStreamer's RTSP server (gst-rtsp-server) on a loopback port.

Run with the system Python, which has PyGObject:  /usr/bin/python3 rtsp_server.py --port 8554
Serves /live: a moving test pattern in H.264 (and, with --audio, a tone in Opus). With --user, /live
asks for HTTP basic authentication: that user and the password in $RTSP_PASSWORD (not in argv, like the
client under test). Reads commands on stdin: `stall` (keep the connection, send nothing), `resume`,
`quit`. Prints `ready` when listening.
"""

from __future__ import annotations

import argparse
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

VIDEO = ("videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 "
         "! valve name=vvalve drop=false ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
         "bitrate=800 ! rtph264pay name=pay0 pt=96 config-interval=1")
AUDIO = (" audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample "
         "! audio/x-raw,rate=48000,channels=1 ! valve name=avalve drop=false ! opusenc ! rtpopuspay name=pay1 pt=97")


class Server:
    def __init__(self, port: int, audio: bool, width: int, height: int, fps: int, user: str | None) -> None:
        self.valves: list[Gst.Element] = []
        self.stalled = False
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(port))
        factory = GstRtspServer.RTSPMediaFactory()
        launch = VIDEO.format(w=width, h=height, fps=fps) + (AUDIO if audio else "")
        factory.set_launch(f"( {launch} )")
        # One pipeline per client: a shared media aborts (gst_rtsp_media_get_rates) when two clients open it
        # at the same moment, which the daemon's parallel camera opens do.
        factory.set_shared(False)
        factory.connect("media-configure", self._on_media)
        if user:
            self._require_login(factory, user, os.environ["RTSP_PASSWORD"])
        self.server.get_mount_points().add_factory("/live", factory)
        if self.server.attach(None) == 0:
            raise SystemExit(f"cannot listen on 127.0.0.1:{port}")

    def _require_login(self, factory: GstRtspServer.RTSPMediaFactory, user: str, password: str) -> None:
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth = GstRtspServer.RTSPAuth()
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        self.server.set_auth(auth)
        rights = "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        factory.add_role_from_structure(Gst.Structure.from_string(rights)[0])

    def _on_media(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        bin_ = media.get_element()
        valves = [v for v in (bin_.get_by_name("vvalve"), bin_.get_by_name("avalve")) if v is not None]
        for valve in valves:  # a client that joins during a stall is stalled too
            valve.set_property("drop", self.stalled)
        self.valves.extend(valves)
        media.connect("unprepared", lambda _m: self._forget(valves))

    def _forget(self, valves: list[Gst.Element]) -> None:
        self.valves = [v for v in self.valves if v not in valves]

    def command(self, line: str) -> bool:
        word = line.strip()
        if word in ("stall", "resume"):
            self.stalled = word == "stall"
            for valve in self.valves:
                valve.set_property("drop", self.stalled)
            print("stalled" if word == "stall" else "resumed", flush=True)
        elif word == "quit":
            return False
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--audio", action="store_true")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--user", help="require this user, with the password in $RTSP_PASSWORD")
    args = ap.parse_args()
    Gst.init(None)
    server = Server(args.port, args.audio, args.width, args.height, args.fps, args.user)
    loop = GLib.MainLoop()

    def on_stdin(source: object, _condition: object) -> bool:
        line = sys.stdin.readline()
        if not line or not server.command(line):
            loop.quit()
            return False
        return True

    GLib.io_add_watch(sys.stdin, GLib.IO_IN | GLib.IO_HUP, on_stdin)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
