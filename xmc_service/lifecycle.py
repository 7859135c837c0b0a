"""The model's lifecycle: load, warm up, watch, retry or exit. Run in the app's lifespan (one
HTTP process) or in the engine process that several HTTP workers share (xmc_service.engine).

Status goes loading -> ready; a load failure -> failed (xmc-serve exits 1, or with
keep_retrying loads again after retry_s); a model process that dies while serving -> failed the
same way; a model that leaves a call unanswered for model_timeout_s (a stopped or hung process)
-> stalled: readiness 503, its requests answered 503, and ready again once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from xmc_service.batcher import Batcher
from xmc_service.model_host import (
    ModelHost,
    ModelProcessExited,
    ModelStalled,
    Pipeline,
    ThreadHost,
    describe_failure,
    load_pipeline,
)
from xmc_service.model_process import ProcessHost
from xmc_service.state import ServiceState

logger = logging.getLogger("xmc_service")

WATCH_INTERVAL_S = 0.5


async def _open_model(state: ServiceState, pipeline: Pipeline | None) -> ModelHost:
    """The model, loaded: a pipeline handed in runs on a thread; one loaded from the settings
    runs in a process of its own (settings.model_process) or on a thread."""
    settings = state.settings
    if pipeline is not None:
        return ThreadHost.around(pipeline, settings.text_cache_size)
    if not settings.model_process:
        # Load on a throwaway thread: the model's own thread is made for the model.
        loaded = await asyncio.to_thread(load_pipeline, settings)
        return ThreadHost.around(loaded, settings.text_cache_size)
    loop = asyncio.get_running_loop()

    def exited(reason: str) -> None:  # on the host's reader thread
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is gone
            loop.call_soon_threadsafe(model_exited, state, reason)

    logger.info("starting the model process ...")
    host = ProcessHost(settings, logger.getEffectiveLevel(), on_exit=exited)
    try:
        await asyncio.to_thread(host.start)
    except BaseException:
        host.close()
        raise
    return host


def model_exited(state: ServiceState, reason: str) -> None:
    """The model's process died while serving: not ready; exit 1, or load again. (Dying while
    it loads or warms up fails that load, which `load_and_warm` handles.)"""
    if state.status not in ("ready", "stalled"):
        return
    state.status, state.error = "failed", reason
    state.stopped_while_serving = True
    logger.error("the model process stopped while serving: %s", reason)
    if state.batcher is not None:  # its running batches have failed with the process
        state.batcher.fail_queued(ModelProcessExited(reason))
    if state.settings.keep_retrying:
        state.reload()
    elif state.on_failure is not None:
        state.on_failure()


async def _start(state: ServiceState, pipeline: Pipeline | None) -> None:
    settings = state.settings
    if state.batcher is not None:  # a reload after the model's process died
        await state.batcher.stop()
        state.batcher = None
    model = await _open_model(state, pipeline)
    wait_ms = settings.batch_wait_ms(model.device_type)
    batcher = Batcher(
        model,
        max_batch_images=settings.max_batch_images,
        max_wait_ms=wait_ms,
        max_queue_images=settings.max_queue_images,
        metrics=state.metrics,
    )
    try:
        await batcher.set_threads(settings.torch_threads)
        if settings.warmup:
            await batcher.warmup()
    except BaseException:
        await batcher.stop()
        raise
    batcher.start()
    state.batcher, state.status, state.error = batcher, "ready", None
    logger.info(
        "ready: %s at %d px, batches of up to %d images, gathered for up to %g ms",
        batcher.model.model_id,
        batcher.model.resolution,
        settings.max_batch_images,
        wait_ms,
    )


async def load_and_warm(state: ServiceState, pipeline: Pipeline | None) -> None:
    """Load until it works (keep_retrying) or once: a failure then calls state.on_failure,
    which xmc-serve sets to stop the server, so the process exits 1."""
    while True:
        try:
            await _start(state, pipeline)
            break
        except asyncio.CancelledError:
            raise
        except Exception as error:
            state.status, state.error = "failed", describe_failure(error)
            logger.error("the model failed to load: %s", state.error)
            logger.debug("the load failure's traceback", exc_info=True)
        if not state.settings.keep_retrying:
            if state.on_failure is not None:
                state.on_failure()
            return
        await asyncio.sleep(state.settings.retry_s)
    await watch(state)


async def watch(state: ServiceState) -> None:
    """While ready: a call the model leaves unanswered for model_timeout_s makes it stalled
    (readiness 503, its queued and running requests 503); an answer makes it ready again. An
    idle model is pinged so a stall is seen without traffic."""
    timeout = state.settings.model_timeout_s
    while state.status in ("ready", "stalled") and state.batcher is not None:
        model = state.batcher.model
        if model.oldest_call_s() == 0.0:
            model.ping()  # answered at once by a live model; left waiting by a stopped one
        await asyncio.sleep(WATCH_INTERVAL_S)
        waited = model.oldest_call_s()
        if state.status == "ready" and waited > timeout:
            state.status = "stalled"
            state.error = f"the model has not answered for {waited:.0f} s"
            logger.error("%s: not ready; its requests are answered 503", state.error)
            state.batcher.fail_queued(ModelStalled(state.error), running=True)
        elif state.status == "stalled" and waited <= timeout:
            state.status, state.error = "ready", None
            logger.warning("the model answers again: ready")
