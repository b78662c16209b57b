"""The daemon's lifecycle: start everything, run the main loop, reload on SIGHUP, stop on SIGTERM.

The main thread owns the loop: it executes commands, runs the stall watchdog, publishes stats and
pings systemd's watchdog only while every processing thread is alive. SIGTERM and SIGINT set one
stop event; components stop in reverse start order, the MQTT outbox last (flushed with a deadline).
The HTTP API (when configured) starts after the pipeline and stops first: its waiting callers get 503
at once instead of waiting for the model to stop.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from edged import __version__
from edged.config import CaptionerConfig, Config, ConfigError, SecretError, load_config
from edged.config.dump import to_plain
from edged.control.commands import Command, parse
from edged.control.executor import CommandExecutor
from edged.control.features import FeatureRegistry, FeatureStore
from edged.control.requests import CameraRequests
from edged.control.search import SearchRequests
from edged.events import Event, HealthReport, Incoming, Message, Stats
from edged.inference.protocol import Captioner
from edged.inference.registry import try_load_captioner
from edged.logs import get_logger
from edged.memory.recorder import Recorder, Snapshot
from edged.outputs.discovery import Discovery
from edged.outputs.mqtt.publisher import MqttPublisher
from edged.pipeline import Pipeline
from edged.queues import BoundedQueue, DropPolicy
from edged.system_stats import system_stats
from edged.systemd import Notifier

if TYPE_CHECKING:
    from edged.api.server import ApiServer

TICK = 0.25  # main-loop granularity (seconds)
STOP_BUDGET = 5.0  # SIGTERM to exit
FLUSH_SHARE = 1.5  # of STOP_BUDGET: flushing the MQTT outbox, which stops last
EXIT_SHARE = 1.0  # of STOP_BUDGET: the main loop's last tick, `offline`, the interpreter's exit
API_SHARE = 0.5  # of STOP_BUDGET, when the HTTP API runs: answering its callers 503, closing its sockets
HISTORY_SHARE = 0.5  # of STOP_BUDGET, when history is on: writing the moments still queued


class Daemon:
    """Runs edged for a config until stopped."""

    def __init__(self, config: Config, config_path: str | None = None, notifier: Notifier | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.log = get_logger(component="daemon")
        self.stop_event = threading.Event()
        self._reload = threading.Event()
        self._commands: BoundedQueue[Command] = BoundedQueue("commands", 256, DropPolicy.DROP_NEWEST)
        self._started = time.monotonic()
        self._last_stats = 0.0
        self._last_watch = 0.0
        self.publisher: MqttPublisher | None = None
        self.pipeline: Pipeline | None = None
        self.features = FeatureRegistry(FeatureStore(config.state_dir / "features.json"))
        self.executor: CommandExecutor | None = None
        self.discovery: Discovery | None = None
        self.captioner: Captioner | None = None
        self._captioner_config: CaptionerConfig | None = None
        self.api: ApiServer | None = None
        self.history: Recorder | None = None
        self._history_settings: tuple[Any, ...] = ()
        self._api_settings: tuple[Any, ...] = ()
        self._api_listening = False  # it started listening: from then on its thread must stay alive
        self.exit_code = 0  # set when the daemon stops itself because it cannot go on
        self._rediscover_at: float | None = None  # Home Assistant came (back) online: resend after a delay
        self._reassert_at: float | None = None  # states again shortly after discovery configs

    # -- entry point -----------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status."""
        self._install_signals()
        try:
            secrets = resolve_secrets(self.config)
        except SecretError as exc:
            self.log.error("secret_unavailable", error=str(exc))
            return 2
        with contextlib.ExitStack() as stack:
            try:
                self._start(stack, secrets)
            except Exception as exc:
                self.log.exception("startup_failed", error=str(exc))
                return 1
            self.notifier.ready(self._status_line())
            self.log.info("edged_running", version=__version__, device=self.config.device.id,
                          cameras=len(self.config.cameras), microphones=len(self.config.all_microphones))
            while not self.stop_event.is_set():
                self._tick()
            self.notifier.stopping()
            self.log.info("edged_stopping")
        self.log.info("edged_stopped", uptime_s=round(time.monotonic() - self._started, 1), exit_code=self.exit_code)
        return self.exit_code

    def stop(self) -> None:
        self.stop_event.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the owner calls stop()
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_event.is_set() and signum == signal.SIGINT:  # a second Ctrl-C: the user means it
            os._exit(128 + signum)
        self.stop_event.set()

    # -- start-up ----------------------------------------------------------------------------------
    def _start(self, stack: contextlib.ExitStack, secrets: dict[str, str]) -> None:
        self.publisher = self._make_publisher(secrets.get("mqtt.password"))
        self.publisher.start()
        stack.callback(self._stop_publisher)
        self.executor = self._make_executor(self.publisher)
        self.discovery = Discovery(self.config, self._send_discovery)
        self._secrets = secrets
        stack.callback(self._close_captioner)
        self._start_history(self.config)
        stack.callback(self._stop_history)  # after the pipeline: its last captions are written
        self._start_pipeline(self.config)
        stack.callback(self._stop_pipeline)
        self._start_api(self.config, secrets)
        stack.callback(self._stop_api)

    def _make_publisher(self, password: str | None) -> MqttPublisher:
        base = self.config.base_topic
        subscriptions = [f"{base}/+/+/set", f"{base}/request/+"]
        discovery = self.config.mqtt.discovery
        if discovery.enabled:
            subscriptions.append(f"{discovery.prefix}/status")
        return MqttPublisher(self.config, password, self._on_incoming, subscriptions)

    def _make_executor(self, publisher: MqttPublisher) -> CommandExecutor:
        executor = CommandExecutor(self.config.base_topic, self.features, self.publish, publisher.respond,
                                   on_ha_online=self._on_home_assistant_online)
        executor.register("health", lambda _r, _resp: self.health().to_payload())
        executor.register("config", lambda _r, _resp: to_plain(self.config))
        CameraRequests(lambda: self.config.cameras, lambda: self.pipeline).register(executor)
        SearchRequests(lambda: self.config).register(executor)
        return executor

    def _on_home_assistant_online(self) -> None:
        """Home Assistant restarted: resend discovery after a random delay (so many devices don't stampede)."""
        self._rediscover_at = time.monotonic() + random.uniform(0.0, 5.0)

    def _send_discovery(self, message: Message) -> None:
        if self.publisher is not None:
            self.publisher.publish_message(message, force=True)  # Home Assistant asked again: send even if unchanged

    def _publish_discovery(self) -> None:
        if self.discovery is None:
            return
        keywords = self.pipeline.keyword_names() if self.pipeline is not None else {}
        self.discovery.publish(self.features.features(), keywords)
        self._reassert_at = time.monotonic() + 1.0  # a state sent right after its config can be missed

    def _start_pipeline(self, config: Config) -> None:
        self._load_captioner(config)
        pipeline = Pipeline(config, self.publish, lambda cam: self._secrets.get(f"cameras.{cam.id}.password"),
                            self.features, self.captioner, record=self._record)
        pipeline.start()
        self.pipeline = pipeline
        for state in self.features.states():
            self.publish(state)
        self._publish_discovery()

    def _load_captioner(self, config: Config) -> None:
        """Load the model once; a reload keeps it when its settings didn't change."""
        wanted = config.captioner
        if self.captioner is not None and wanted == self._captioner_config:
            return
        self._close_captioner()
        self._captioner_config = wanted
        self.captioner = try_load_captioner(wanted)

    def _close_captioner(self) -> None:
        if self.captioner is not None:
            self.captioner.close()
            self.captioner = None

    def _stop_pipeline(self) -> None:
        if self.pipeline is not None:
            # Every thread of the pipeline against one deadline; the rest of the budget flushes the outbox.
            api = self.config.api
            api_share = API_SHARE if api is not None and api.enabled else 0.0
            history_share = HISTORY_SHARE if self.history is not None else 0.0
            self.pipeline.stop(timeout=STOP_BUDGET - FLUSH_SHARE - EXIT_SHARE - api_share - history_share)
            self.pipeline = None

    def _start_history(self, config: Config) -> None:
        """The memory, when enabled; one that cannot open is logged and everything else runs on."""
        self._history_settings = (config.history, config.history_path)
        if not config.history.enabled:
            return
        try:
            recorder = Recorder(config.history, config.history_path)
        except Exception as exc:
            self.log.error("history_unavailable", path=str(config.history_path), error=str(exc))
            return
        try:
            recorder.start()
        except Exception as exc:
            recorder.stop(0.0)
            self.log.error("history_unavailable", path=str(config.history_path), error=str(exc))
            return
        self.history = recorder

    def _stop_history(self) -> None:
        if self.history is not None:
            self.history.stop(HISTORY_SHARE)
            self.history = None

    def _record(self, event: Event, snapshot: Snapshot) -> None:
        """The scheduler's thread: hand a caption or answer to the memory (queued, never blocks)."""
        history = self.history
        if history is not None:
            history.record(event, snapshot)

    def _start_api(self, config: Config, secrets: dict[str, str]) -> None:
        """The HTTP API, when configured; one that cannot listen is logged and shown in stats, and
        everything else runs on."""
        self._api_settings = _api_settings(config, secrets)
        if config.api is None or not config.api.enabled:
            return
        try:
            from edged.api.server import ApiServer
        except ImportError as exc:
            self.log.error("api_unavailable", error=str(exc), fix="pip install 'edged[api]'")
            return
        self.api = ApiServer(config.api, secrets.get("api.token"), lambda: self.pipeline)
        self._api_listening = self.api.start()

    def _stop_api(self) -> None:
        if self.api is not None:
            self.api.stop(API_SHARE)
            self.api = None
            self._api_listening = False

    def _stop_publisher(self) -> None:
        if self.publisher is not None:
            self.publisher.stop(flush_timeout=FLUSH_SHARE)

    # -- the main loop -------------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Publish from any thread; a failure here is logged and never breaks the caller (a source thread)."""
        if self.publisher is None:
            return
        try:
            self.publisher.publish(event)
        except Exception as exc:
            self.log.exception("publish_failed", event_type=type(event).__name__, error=str(exc))

    def _on_incoming(self, message: Incoming) -> None:
        """paho's thread: parse, validate, enqueue. Nothing else (and `parse` never raises)."""
        discovery = self.config.mqtt.discovery
        command = parse(message, self.config.base_topic, discovery.prefix if discovery.enabled else None)
        if not self._commands.put(command):
            self.log.warning("command_queue_full", topic=message.topic)

    def _tick(self) -> None:
        """One turn of the main loop. Each step is guarded: a failing step is logged and the loop goes on
        (a step that fails every time, like the watchdog check, stops the watchdog pings instead)."""
        self._guarded("commands", self._execute_commands)
        now = time.monotonic()
        if self._reload.is_set():
            self._reload.clear()
            self._guarded("reload", self.reload)
        if self._rediscover_at is not None and now >= self._rediscover_at:
            self._rediscover_at = None
            self._guarded("discovery", self._publish_discovery)
        if self._reassert_at is not None and now >= self._reassert_at and self.publisher is not None:
            self._reassert_at = None
            self._guarded("reassert", self._reassert_states)
        if now - self._last_watch >= 1.0:
            self._last_watch = now
            self._guarded("watchdog", self._watch)
        if now - self._last_stats >= self.config.mqtt.stats_interval:
            self._last_stats = now
            self._guarded("stats", lambda: self.publish(self.stats()))

    def _reassert_states(self) -> None:
        if self.publisher is not None:
            self.publisher.reassert(self.config.base_topic)

    def _guarded(self, step: str, run: Callable[[], object]) -> None:
        try:
            run()
        except Exception as exc:
            self.log.exception("main_loop_step_failed", step=step, error=str(exc)[:200])

    def _execute_commands(self) -> None:
        command = self._commands.get(timeout=TICK)
        while command is not None and self.executor is not None:
            self.executor.execute(command)  # never raises
            command = self._commands.get(timeout=0)

    def _watch(self) -> None:
        if self.publisher is not None and not self.publisher.link.alive:
            # Deaf and mute for good: restarting is the fix, so exit and let systemd do it.
            self.log.critical("mqtt_link_dead", detail="the MQTT network loop keeps failing; exiting for a restart")
            self.exit_code = 1
            self.stop_event.set()
            return
        if self.pipeline is None:
            return
        self.pipeline.check_stalls()
        if self.healthy():
            self.notifier.watchdog()
        else:
            self.log.error("watchdog_unhealthy", detail="a processing thread died; systemd will restart edged")

    def healthy(self) -> bool:
        """Every processing thread alive, and the MQTT link's network loop and outbox sender running."""
        pipeline_ok = self.pipeline is not None and self.pipeline.healthy()
        publisher_ok = self.publisher is not None and self.publisher.sender.alive and self.publisher.link.alive
        api_ok = not self._api_listening or (self.api is not None and self.api.alive)
        history_ok = self.history is None or self.history.alive
        return pipeline_ok and publisher_ok and api_ok and history_ok

    # -- reload ----------------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config file; an invalid one keeps the running config (and says why)."""
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
            secrets = resolve_secrets(new)
        except (ConfigError, SecretError) as exc:
            self.log.error("config_reload_failed", file=self.config_path, problems=str(exc).splitlines())
            return False
        self.notifier.reloading()
        self.log.info("config_reloading", file=self.config_path)
        running, running_secrets = self.config, self._secrets
        try:
            self._switch_to(new, secrets)
        except Exception as exc:
            self.log.exception("config_reload_failed", file=self.config_path, error=str(exc)[:300],
                               action="keeping the running config")
            self._roll_back(running, running_secrets)
            return False
        self.notifier.ready(self._status_line())
        self.log.info("config_reloaded", cameras=len(new.cameras), microphones=len(new.all_microphones))
        return True

    def _switch_to(self, config: Config, secrets: dict[str, str]) -> None:
        """Run `config`: a new MQTT link only when its settings changed, always a new pipeline."""
        if _publisher_settings(config) != _publisher_settings(self.config):
            self._stop_publisher()
            self.config = config
            self.publisher = self._make_publisher(secrets.get("mqtt.password"))
            self.publisher.start()
            self.executor = self._make_executor(self.publisher)
        # The API restarts when its settings (or token) changed, or to retry an address it could not bind.
        api_changed = _api_settings(config, secrets) != self._api_settings or (
            self.api is not None and not self._api_listening)
        if api_changed:
            self._stop_api()
        self._stop_pipeline()
        history_changed = (config.history, config.history_path) != self._history_settings
        if history_changed:
            self._stop_history()
            self._start_history(config)
        self.discovery = Discovery(config, self._send_discovery)
        self.config = config
        self._secrets = secrets
        self._start_pipeline(config)
        if api_changed:
            self._start_api(config, secrets)

    def _roll_back(self, config: Config, secrets: dict[str, str]) -> None:
        """Back to the config that ran before a failed reload; if even that fails, exit for systemd."""
        try:
            self._switch_to(config, secrets)
        except Exception as exc:
            self.log.critical("config_rollback_failed", error=str(exc)[:300], detail="exiting for a restart")
            self.exit_code = 1
            self.stop_event.set()
            return
        self.notifier.ready(self._status_line())
        self.log.info("config_rolled_back", cameras=len(config.cameras), microphones=len(config.all_microphones))

    # -- reports ---------------------------------------------------------------------------------------
    def health(self) -> HealthReport:
        sources = {} if self.pipeline is None else self.pipeline.stats()
        return HealthReport(__version__, self.config.device.id, self.healthy(), time.monotonic() - self._started,
                            {k: v.get("state") for k, v in sources.items()},
                            None if self.publisher is None else self.publisher.stats())

    def stats(self) -> Stats:
        sources = {} if self.pipeline is None else self.pipeline.stats()
        system = system_stats()
        if self.publisher is not None:
            system["mqtt"] = self.publisher.stats()
        if self.executor is not None:
            system["commands"] = {"executed": self.executor.executed, "errors": self.executor.errors}
        if self.pipeline is not None:
            system["scheduler"] = self.pipeline.scheduler.stats()
        if self.api is not None:
            system["api"] = self.api.stats()
        if self.history is not None:
            system["history"] = self.history.stats()
        return Stats(time.time(), time.monotonic() - self._started, sources, system)

    def _status_line(self) -> str:
        return f"{len(self.config.cameras)} cameras, {len(self.config.all_microphones)} microphones"


def resolve_secrets(config: Config) -> dict[str, str]:
    """Read every secret the config names, by key path (raises `SecretError` naming the first unreadable one)."""
    return {key: ref.reveal() for key, ref in config.secret_refs.items()}


def _publisher_settings(config: Config) -> tuple[Any, ...]:
    return (config.mqtt, config.device, config.state_dir)


def _api_settings(config: Config, secrets: dict[str, str]) -> tuple[Any, ...]:
    """What the HTTP API runs with: a reload restarts it only when this changed."""
    return (config.api, secrets.get("api.token"))

