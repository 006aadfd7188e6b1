"""OpenTelemetry export (``traces: {otlp: {endpoint: ...}}`` in wistro.yml, the ``otel`` extra).

:class:`OtlpExporter` is an engine observer (duck-typed: this layer does not import the core). It
turns every finished Wistro span into an OpenTelemetry span and every Wistro log into an
OpenTelemetry log record, and hands them to the SDK's batch processors, whose threads encode and
send them with the OTLP/HTTP protobuf exporters (``<endpoint>/v1/traces``, ``<endpoint>/v1/logs``).
Nothing is sent from the event loop.

Ids: Wistro's span ids (16 hex digits) and trace ids (32) are OpenTelemetry's as they are. A run
started with a caller's W3C ``traceparent`` is exported in the caller's trace (its trace id and
sampled flag), its root spans parented to the caller's span; ``wistro.trace_id`` keeps Wistro's.

A span is built as a finished ``ReadableSpan`` from its record (ids, parent and times are the
record's) and given to a ``BatchSpanProcessor``. The other supported route, a ``Tracer`` with an
``IdGenerator`` fed each record's ids, yields the same ``ReadableSpan`` but costs ~37 µs of
attribute checks and sampler calls per span on the event loop, against ~5 µs.

The exporter starts its threads on the first record and stops them in :meth:`OtlpExporter.close`
(``App.aclose``, or at interpreter exit); a record after ``close`` starts them again. A collector
that does not answer costs one warning (``wistro.otel``) per outage, never an error in a run:
what cannot be sent is dropped. OpenTelemetry is imported only when an exporter is made.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import json
import logging
import threading
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from wistro.config import OtlpConfig
from wistro.errors import ConfigError
from wistro.tracing.records import LogRecord, SpanRecord
from wistro.tracing.traceparent import parse_traceparent

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

logger = logging.getLogger("wistro.otel")

INSTALL = "pip install 'wistro[otel]'"
_INT64 = 2**63
_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "warn": 13, "error": 17, "critical": 21}


def _load() -> SimpleNamespace:
    """The OpenTelemetry names used here, imported now (ConfigError when the extra is missing)."""
    try:
        from opentelemetry import trace as api
        from opentelemetry._logs import LogRecord as OtelLogRecord
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace.status import Status, StatusCode
    except ImportError as e:
        raise ConfigError(
            f"traces.otlp needs the OpenTelemetry SDK and its OTLP/HTTP exporter ({e}): {INSTALL}"
        ) from None
    return SimpleNamespace(
        api=api,
        OtelLogRecord=OtelLogRecord,
        SeverityNumber=SeverityNumber,
        OTLPLogExporter=OTLPLogExporter,
        OTLPSpanExporter=OTLPSpanExporter,
        LoggerProvider=LoggerProvider,
        BatchLogRecordProcessor=BatchLogRecordProcessor,
        LogRecordExportResult=LogRecordExportResult,
        Resource=Resource,
        Event=Event,
        ReadableSpan=ReadableSpan,
        BatchSpanProcessor=BatchSpanProcessor,
        SpanExportResult=SpanExportResult,
        InstrumentationScope=InstrumentationScope,
        Status=Status,
        StatusCode=StatusCode,
    )


class _Quiet(logging.Filter):
    """Drops the OTLP exporters' own records (a warning per retry, an error per batch) while one
    of ours exports, keeping the first message (it names the cause) as our warning's reason."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        local = self.local
        if getattr(local, "on", False):
            if getattr(local, "reason", None) is None:
                local.reason = record.getMessage()
            return False
        return True


_QUIET = _Quiet()


class _Health:
    """Whether the collector answers, shared by the span and log exporters: one warning when it
    stops answering, one info line when it answers again."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failing = False
        self.closing = False
        self.lock = threading.Lock()

    def failed(self, what: str, reason: str) -> None:
        with self.lock:
            if self.failing:
                return
            self.failing = True
        logger.warning(
            "OpenTelemetry export of %s to %s failed (%s); runs go on, and what cannot be sent "
            "is dropped until the collector answers",
            what,
            self.url,
            reason[:300],
        )

    def worked(self) -> None:
        with self.lock:
            if not self.failing:
                return
            self.failing = False
        logger.info("OpenTelemetry export to %s works again", self.url)


class _Guarded:
    """An OTLP exporter (spans or logs) as the batch processor's exporter: it never raises, stays
    quiet but for ``_Health``, and once closing makes one attempt per batch (none once failed)."""

    def __init__(self, inner: Any, what: str, health: _Health, success: Any, failure: Any):
        self.inner, self.what, self.health = inner, what, health
        self.success, self.failure = success, failure
        self._shut = False

    def export(self, batch: Sequence[Any]) -> Any:
        health = self.health
        if self._shut or (health.closing and health.failing):
            return self.failure
        quiet = _Quiet.local
        quiet.on, quiet.reason = True, None
        try:
            result = self.inner.export(batch)
        except Exception as e:
            result, quiet.reason = self.failure, f"{type(e).__name__}: {e}"
        finally:
            quiet.on = False
        if result == self.success:
            health.worked()
        else:
            health.failed(self.what, str(quiet.reason or "no answer"))
        return result

    def stop_retrying(self) -> None:
        """Make a retry in progress (and later ones) give up at once: the event the OTLP/HTTP
        client's retry loop waits on (private to the exporter package: best effort, found by
        name; without it, close waits for the retries, at most ``timeout_s`` per batch)."""
        for owner, name in (
            (getattr(self.inner, "_client", None), "_shutdown_event"),
            (self.inner, "_shutdown_in_progress"),
        ):
            event = getattr(owner, name, None)
            if isinstance(event, threading.Event):
                event.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        quiet = _Quiet.local
        quiet.on = True
        try:
            self.inner.shutdown()
        except Exception:
            pass
        finally:
            quiet.on = False


class _Pipeline:
    """The SDK objects of one export session: resource, processors (threads), exporters."""

    def __init__(self, otel: SimpleNamespace, config: OtlpConfig, service_name: str) -> None:
        base = config.endpoint.rstrip("/")
        self.health = _Health(base)
        options: dict[str, Any] = {"headers": dict(config.headers), "timeout": config.timeout_s}
        spans = otel.OTLPSpanExporter(endpoint=f"{base}/v1/traces", **options)
        logs = otel.OTLPLogExporter(endpoint=f"{base}/v1/logs", **options)
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("opentelemetry.exporter"):
                logging.getLogger(name).addFilter(_QUIET)
        spans_result, logs_result = otel.SpanExportResult, otel.LogRecordExportResult
        self.spans_out = _Guarded(
            spans, "spans", self.health, spans_result.SUCCESS, spans_result.FAILURE
        )
        self.logs_out = _Guarded(
            logs, "logs", self.health, logs_result.SUCCESS, logs_result.FAILURE
        )
        self.resource = otel.Resource.create({"service.name": service_name})
        try:
            version = importlib.metadata.version("wistro")
        except importlib.metadata.PackageNotFoundError:
            version = "0"
        self.scope = otel.InstrumentationScope("wistro", version)
        self.span_processor: BatchSpanProcessor = otel.BatchSpanProcessor(self.spans_out)
        self.log_provider = otel.LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        self.log_processor: BatchLogRecordProcessor = otel.BatchLogRecordProcessor(self.logs_out)
        self.log_provider.add_log_record_processor(self.log_processor)
        self.otel_logger = self.log_provider.get_logger("wistro", version)

    def close(self) -> None:
        """Send what is queued (one attempt per batch), then stop the threads."""
        self.health.closing = True
        self.spans_out.stop_retrying()
        self.logs_out.stop_retrying()
        quiet = _Quiet.local
        quiet.on = True  # "already shut down" notes of the SDK's second shutdown call
        try:
            self.span_processor.shutdown()
            self.log_provider.shutdown()
        finally:
            quiet.on = False


class OtlpExporter:
    """Exports a project's spans and logs to OpenTelemetry; add it to the engine's observers.

    ``traceparent_of(trace_id)`` gives the W3C ``traceparent`` a run was started with (None:
    it has none); the app passes one reading ``engine.runs``.
    """

    def __init__(
        self,
        config: OtlpConfig,
        service_name: str,
        traceparent_of: Callable[[str], str | None],
    ) -> None:
        self.config = config
        self.service_name = service_name
        self.traceparent_of = traceparent_of
        self._otel = _load()
        self._pipeline: _Pipeline | None = None
        self._lock = threading.Lock()
        self._api: set[str] = set()  # runs of api requests whose first span has not ended
        self._warned = False  # one warning for records that cannot be exported
        self._off = False  # the export could not start: nothing more is tried
        otel = self._otel
        self._ctx = otel.api.SpanContext
        self._flags = (otel.api.TraceFlags(0), otel.api.TraceFlags(1))
        self._unset = otel.Status(otel.StatusCode.UNSET)
        self._kinds = (otel.api.SpanKind.CONSUMER, otel.api.SpanKind.SERVER)

    # ------------------------------------------------------------ the observer
    def on_run_start(self, run: Any) -> None:
        if run.record.trigger == "api":
            self._api.add(run.trace_id)

    def on_event(self, event: Any) -> None:
        pass

    def on_span_start(self, span: SpanRecord) -> None:
        pass

    def on_span_end(self, span: SpanRecord) -> None:
        try:
            pipeline = self._pipeline or self._start()
            pipeline.span_processor.on_end(self._span_of(span, pipeline))
        except Exception as e:
            self._failed("could not export span", span.id, e)

    def on_log(self, log: LogRecord) -> None:
        try:
            pipeline = self._pipeline or self._start()
            self._log(log, pipeline)
        except Exception as e:
            self._failed("could not export a log of", log.span_id or log.trace_id, e)

    def on_run_end(self, run: Any) -> None:
        self._api.discard(run.trace_id)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Flush what is queued and stop the export threads (idempotent; bounded when the
        collector is down: one attempt per batch, none after the first failure)."""
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is None:
            return
        atexit.unregister(self.close)
        pipeline.close()

    shutdown = close

    def _start(self) -> _Pipeline:
        with self._lock:
            if self._pipeline is None:
                if self._off:
                    raise RuntimeError("the export could not start")
                try:
                    self._pipeline = _Pipeline(self._otel, self.config, self.service_name)
                except Exception:
                    self._off = True
                    raise
                atexit.register(self.close)
            return self._pipeline

    def _failed(self, what: str, record_id: str | None, e: Exception) -> None:
        """One warning, the first time: a record that cannot be converted (or an export that
        cannot start, after which nothing is tried) never fails the run."""
        if not self._warned:
            self._warned = True
            about = f"{what} {record_id}" if record_id else what
            logger.warning("OpenTelemetry: %s (%s: %s)", about, type(e).__name__, e)

    # ------------------------------------------------------------ conversion
    def _trace_of(self, trace_id: str) -> tuple[int, int, str | None]:
        """``(otel trace id, sampled flag, caller's span id)`` of a Wistro trace."""
        header = self.traceparent_of(trace_id)
        if header:
            caller = parse_traceparent(header)
            if caller is not None:
                return int(caller[0], 16), int(header.strip()[-2:], 16) & 1, caller[1]
        return int(trace_id, 16), 1, None

    def _span_of(self, rec: SpanRecord, pipeline: _Pipeline) -> Any:
        otel = self._otel
        trace_id, sampled, caller = self._trace_of(rec.trace_id)
        flags = self._flags[sampled]
        ctx = self._ctx(trace_id, int(rec.id, 16), False, flags)
        parent_id = rec.parent_span_id
        parent = (
            self._ctx(trace_id, int(parent_id, 16), parent_id == caller, flags)
            if parent_id
            else None
        )
        topic, step = rec.topic, rec.step
        if rec.event_id:  # a delivery of an event
            kind, name = self._kinds[0], f"{topic} process"
            attributes: dict[str, Any] = {
                "messaging.system": "wistro",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": step,
                "messaging.operation.type": "process",
                "messaging.message.id": rec.event_id,
            }
        elif rec.trace_id in self._api:  # an api step serving a request (Engine.call)
            self._api.discard(rec.trace_id)
            method, _, route = topic.partition(" ")
            kind, name = self._kinds[1], topic
            attributes = {"http.request.method": method, "http.route": route}
        else:  # a step called directly (a cron job)
            kind, name = otel.api.SpanKind.INTERNAL, topic
            attributes = {}
        attributes["wistro.step"] = step
        attributes["wistro.attempt"] = rec.attempt
        if rec.worker:
            attributes["wistro.worker"] = rec.worker
        attributes["wistro.trace_id"] = rec.trace_id
        start = int(rec.start * 1e9)
        end = int((rec.end or rec.start) * 1e9)
        status, events = self._unset, []
        if rec.status != "ok":
            error = rec.error or rec.status
            status = otel.Status(otel.StatusCode.ERROR, error)
            kind_of_error, sep, message = error.partition(": ")
            typed = bool(rec.traceback and sep and kind_of_error.isidentifier())
            attributes["error.type"] = kind_of_error if typed else rec.status
            if rec.traceback:
                exception = {
                    "exception.type": kind_of_error if typed else rec.status,
                    "exception.message": message if typed else error,
                    "exception.stacktrace": rec.traceback,
                }
                events = [otel.Event("exception", exception, end)]
        return otel.ReadableSpan(
            name,
            ctx,
            parent,
            pipeline.resource,
            attributes,
            events,
            kind=kind,
            status=status,
            start_time=start,
            end_time=end,
            instrumentation_scope=pipeline.scope,
        )

    def _log(self, log: LogRecord, pipeline: _Pipeline) -> None:
        otel = self._otel
        api = otel.api
        if log.trace_id:
            trace_id, sampled, _ = self._trace_of(log.trace_id)
            span_id = int(log.span_id, 16) if log.span_id else 0
            span = api.NonRecordingSpan(self._ctx(trace_id, span_id, False, self._flags[sampled]))
        else:
            span = api.INVALID_SPAN
        attributes: dict[str, Any] = {}
        if log.fields_json and log.fields_json != "{}":
            for key, value in json.loads(log.fields_json).items():
                attributes[str(key)] = _attribute(value)
        if log.step:
            attributes["wistro.step"] = log.step
        if log.trace_id:
            attributes["wistro.trace_id"] = log.trace_id
        ts = int(log.ts * 1e9)
        severity = _SEVERITY.get(log.level.lower(), 0)
        pipeline.otel_logger.emit(
            otel.OtelLogRecord(
                timestamp=ts,
                observed_timestamp=ts,
                context=api.set_span_in_context(span),
                severity_text=log.level,
                severity_number=otel.SeverityNumber(severity),
                body=log.message,
                attributes=attributes,
            )
        )


def _attribute(value: Any) -> Any:
    """A log field as an OpenTelemetry attribute: text, a bool, a float or a 64-bit int as it
    is; anything else (None, lists, objects, big ints) as its JSON text."""
    if isinstance(value, str | bool | float) or (
        isinstance(value, int) and -_INT64 <= value < _INT64
    ):
        return value
    return json.dumps(value, ensure_ascii=False)
