"""A one-page Gradio demo of the segmentation model: upload an image, get the overlay, legend, areas and mask.

    python -m workbench.gradio_app [--port 7860] [--host 127.0.0.1] [--checkpoint auto|PATH]
                                   [--max-megapixels 50] [--time-budget 120] [--concurrency 2]

With ``--checkpoint auto`` (the default) each image is segmented by the model whose training domain fits it best
among the shipped ones and the fine-tuning runs (``core.seg.model_choice``); the choice, its score and an out-of-domain
warning are in the info. The image goes through the same calls as the ``segment`` CLI and the workbench's Segment
page: ``core.imaging.imageio.read_image`` and ``core.seg.segment.segment_choosing``. Results are kept per file content and
settings (the last ``KEEP_RESULTS``), so the same file uploaded again comes back at once.

The endpoint is also an API: ``gradio_client.Client(url).predict(handle_file(path), api_name="/segment")`` returns
(overlay PNG path, named ``<image>_overlay.png``, area table (class, pixels, percent, square metres where known,
colour), mask PNG path, [areas CSV, report JSON, mask GeoTIFF], info Markdown); the legend's swatches are drawn on
the page only.
Moving the opacity slider calls ``/overlay``, which re-blends the session's last result without running the model.
A label mask of the image ("Score against a label mask") calls ``/score`` (image, label mask), which scores the kept
result as the workbench's Segment page does (``core.seg.label_score``: class indices or colours, a palette PNG by its
colours) and returns (summary Markdown, IoU table: class, IoU (%), label pixels, the report JSON with the score in
its ``label_score``). The page's "Segment again" button
clears that score at once and scores the new result against the mask already given (none given: the score stays empty).
A file that cannot be used comes back as an error with one line saying why, never a traceback.

Offline by design: analytics off, bound to 127.0.0.1 unless ``--host`` says otherwise, no share link, system
fonts (no font CDN), uploads capped at ``MAX_FILE_SIZE``.

Bounded work (``core.imaging.budget``): an image over the pixel budget is refused from its header before it is decoded; a
PNG/JPEG whose window count alone (from the header, times one timed batch of the model) clearly exceeds the time
budget is refused before decoding too; any other request that will not finish in time is stopped as soon as its
first windows show it, and the work of a client that went away stops at its next batch of windows. The cores are
split between the requests served at once. Two requests run at once by default; more
wait in a bounded queue whose position and expected wait the page shows.
"""
from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported: no calls home, ever
from core.data.paths import scratch_dir  # noqa: E402

os.environ.setdefault("GRADIO_TEMP_DIR", str(scratch_dir() / "gradio-cache"))  # uploads stay under the data root

import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core.imaging.budget import Deadline, WorkStopped, give_back_memory, max_pixels  # noqa: E402
from core.store.checkpoint import CheckpointError  # noqa: E402
from core.imaging.imageio import ImageError, PixelBudgetError, generated_png, read_image  # noqa: E402
from core.seg.infer import check_tile, overlap_pixels  # noqa: E402
from core.seg.label_score import LabelMaskError, check_label_mask_size, score_label_file  # noqa: E402
from core.seg.scene_role import unseen_check  # noqa: E402
from core.seg.scene_role import note_scene  # noqa: E402
from core.seg.segment import segment_choosing  # noqa: E402
from core.seg.segmentation_result import Segmentation  # noqa: E402
from workbench.gradio_args import CONCURRENCY, MAX_QUEUE, TIME_BUDGET_S, demo_parser  # noqa: E402
from workbench.gradio_quiet import QuietDropdown, QuietSlider  # noqa: E402
from workbench.gradio_outputs import (API_AREA_COLUMNS, DISPLAY_SIDE, LABEL_COLUMNS, Outputs, api_areas, info_markdown,  # noqa: E402
                                      label_markdown, label_table, overlay_file, write_downloads,
                                      write_report)
from workbench.segment_view import legend_html, one_line, screen_copy  # noqa: E402
from workbench.gradio_serving import (KEEP_RESULTS, Leaving, Models, file_digest,  # noqa: E402,F401
                                      sweep_upload_leftovers)  # the last two also for tests and main

SERVER_BUDGET = ("this demo's server sets the budget: start it with --max-megapixels N (or $FALSE_WB_MAX_MEGAPIXELS), or "
                 "use python -m core.segment")
MAX_FILE_SIZE = "200mb"  # per upload, enforced by the server before our code sees the file
TILES = [256, 384, 512, 768, 1024]
SAMPLE_SEED = 2  # a generated scene with roads, buildings and trees
THEME_FONT = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
THEME_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "monospace"]


def build_demo(checkpoint: Path | None = None, *, max_megapixels: float | None = None,
               time_budget_s: float | None = TIME_BUDGET_S) -> gr.Blocks:
    """The Blocks app around one checkpoint, or ``auto`` (default): the best domain fit per image; CheckpointError
    if unusable. Each request: at most ``max_megapixels`` (checked from the header; default 50 or
    $FALSE_WB_MAX_MEGAPIXELS) and ``time_budget_s`` seconds (None: no limit)."""
    budget_px = max_pixels(max_megapixels)
    sweep_upload_leftovers()
    try:
        net = Models(checkpoint)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - a card that builds no model, odd files: one line
        raise CheckpointError(f"checkpoint {checkpoint}: cannot be used ({type(err).__name__}: "
                              f"{one_line(err)})") from None
    outputs = Outputs()
    leaving = Leaving()  # whose tab closed (Gradio's unload event): their work stops
    failed: dict[str, str] = {}  # browser session -> why its last file was not segmented (for the page, not the API)

    def segment(path: str | None, opacity: float = 0.5, tile: int = 512, overlap: float = 0.25,
                tta: bool = False, request: gr.Request | None = None,
                progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        """One uploaded file -> overlay, legend, areas, mask file, other files, info, the result for re-blending."""
        session = getattr(request, "session_hash", None)
        with net.lock:
            failed.pop(session or "", None)  # an earlier failure's reason never stands for this call's
        try:
            with leaving.watch(session) as gone:
                return segment_file(path, opacity, tile, overlap, tta, progress, gone)
        except gr.Error as err:
            if session:
                with net.lock:
                    failed[session] = str(err.message)
                    while len(failed) > KEEP_RESULTS:
                        failed.pop(next(iter(failed)), None)
            raise
        finally:
            give_back_memory()  # a refused budget-sized image left the server 2 GB larger (bench/load_gradio.py)

    def not_segmented(request: gr.Request | None = None) -> tuple[Any, ...]:
        """After a failed call the page shows no earlier image's result beside the error: all outputs are cleared
        and the info box keeps the reason (the error message itself fades)."""
        with net.lock:
            why = failed.pop(getattr(request, "session_hash", None) or "", None)
        empty = pd.DataFrame(columns=API_AREA_COLUMNS)
        return None, empty, None, None, "❌ **Not segmented**" + (f": {why}" if why else ""), None

    def segmentation(path: str | None, tile: int, overlap: float, tta: bool, progress: gr.Progress,
                     gone: Callable[[], bool] | None) -> tuple[str, Segmentation, float | None]:
        """(file name, segmentation, pixel size) of an upload: the kept result for its content and settings, else
        computed within the budgets; gr.Error in one line when it cannot be."""
        if not path:
            raise gr.Error("Upload an image first.", print_exception=False)
        name = Path(path).name
        try:
            tile = check_tile(int(tile))
            overlap_pixels(float(overlap), tile)
        except (TypeError, ValueError) as err:
            raise gr.Error(f"settings: {err}", print_exception=False) from None
        net.refuse_if_too_slow(path, name, tile, float(overlap), bool(tta), time_budget_s, budget_px)
        try:
            loaded = read_image(path, max_pixels=budget_px)
        except PixelBudgetError as err:  # a user of the demo cannot pass a flag: its server sets the budget
            raise gr.Error(f"{name}: {err.with_hint(SERVER_BUDGET)}", print_exception=False) from None
        except ImageError as err:
            raise gr.Error(f"{name}: {err}", print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - never a traceback for one bad file
            raise gr.Error(f"{name}: cannot be read ({type(err).__name__}: {one_line(err)})",
                           print_exception=False) from None
        key = (file_digest(path), (tile, float(overlap), bool(tta)))
        progress(0.0, desc="Choosing the model" if net.given is None else "Segmenting")
        deadline = Deadline(time_budget_s, gone)
        try:
            with net.lock:
                seg = net.results.get(key)
            if seg is None:
                seg = segment_choosing(
                    loaded, net.entries, net.cache, given=net.given, device=net.device, tile=tile,
                    given_by="set when the demo was started (--checkpoint)",
                    overlap=float(overlap), tta=bool(tta), progress=deadline.wrap(
                        lambda done, total: progress((done, total), desc="Segmenting", unit="windows")))
                with net.lock:
                    net.remember(key, seg)
            note_scene(seg, name, path)  # one of the model's scenes (no unseen score); a kept result too: by name
        except (WorkStopped, ImageError, CheckpointError) as err:
            failure, unexpected = f"{name}: {err}", False
        except MemoryError:
            failure, unexpected = f"{name}: out of memory (try a smaller tile)", False
        except Exception as err:  # noqa: BLE001 - e.g. CUDA out of memory: one line
            failure, unexpected = f"{name}: segmentation failed ({type(err).__name__}: {one_line(err)})", True
        else:
            return name, seg, loaded.pixel_size_m
        # raised out here, not in the handler: an error raised there keeps the stopped work's frames (a budget-sized
        # image's pixels and accumulators, about 1 GB) alive as its context for as long as the error lives
        del loaded
        raise gr.Error(failure.replace("`", ""), print_exception=unexpected)  # a pop-up shows no Markdown

    def segment_file(path: str | None, opacity: float, tile: int, overlap: float, tta: bool,
                     progress: gr.Progress, gone: Callable[[], bool] | None) -> tuple[Any, ...]:
        name, seg, pixel_size_m = segmentation(path, tile, overlap, tta, progress, gone)
        stem, out = Path(name).stem or "image", outputs.new()
        mask, extras = write_downloads(seg, stem, out, name)
        view = screen_copy(seg, DISPLAY_SIDE)
        info_text = info_markdown(name, seg, pixel_size_m)
        return overlay_file(view, float(opacity), stem, out), api_areas(seg), mask, extras, info_text, (view, stem)

    def score(path: str | None, labels: str | None, tile: int = 512, overlap: float = 0.25, tta: bool = False,
              request: gr.Request | None = None, progress: gr.Progress = gr.Progress()) -> tuple[str, Any, str]:
        """The image (its kept result, or segmented now) scored against a label mask of it, as the Segment page and
        ``core.segment --labels`` score (``core.seg.label_score``): a summary, the IoU per class, and the report
        again with the score in its ``label_score`` (the downloads' report, written before any score, says null)."""
        session = f"{getattr(request, 'session_hash', None) or ''}:score"
        with net.lock:
            failed.pop(session, None)
        try:
            if not labels:
                raise gr.Error("Upload a label mask of the image.", print_exception=False)
            try:
                check_label_mask_size(labels, path)  # from the headers, before any segmenting
                with leaving.watch(getattr(request, "session_hash", None)) as gone:
                    name, seg, _ = segmentation(path, tile, overlap, tta, progress, gone)
                scored = score_label_file(seg.mask, labels, seg.classes, rule=seg.label_masks)
            except LabelMaskError as err:
                raise gr.Error(f"{Path(labels).name}: {err}", print_exception=False) from None
            try:  # the report alone (a copy: the kept result stays without the score; another mask may score it)
                score = scored.report(seg.classes, Path(labels).name, unseen_check(seg.notes))
                report = write_report(replace(seg, label_score=score),
                                      Path(name).stem or "image", outputs.new(), name)
            except OSError as err:
                raise gr.Error(f"the report could not be written ({one_line(err)})", print_exception=True) from None
        except gr.Error as err:
            with net.lock:
                failed[session] = str(err.message)
            raise
        finally:
            give_back_memory()
        # headed by the image, as /segment's answer is, then its mask (a review read only the mask's name)
        heading = f"{Path(name).name} against {Path(labels).name}"
        return label_markdown(heading, scored, seg), label_table(scored, seg.classes), report

    def no_label_score() -> tuple[str, Any, None]:
        return "", pd.DataFrame(columns=LABEL_COLUMNS), None

    def not_scored(request: gr.Request | None = None) -> tuple[str, Any, None]:
        """After a failed scoring the reason stays in the page (the error message itself fades)."""
        with net.lock:
            why = failed.pop(f"{getattr(request, 'session_hash', None) or ''}:score", None)
        return "❌ **Not scored**" + (f": {why}" if why else ""), pd.DataFrame(columns=LABEL_COLUMNS), None

    def rescore(path: str | None, labels: str | None, tile: int = 512, overlap: float = 0.25, tta: bool = False,
                request: gr.Request | None = None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        """After Run: the label mask already given scores the new result; without one the score stays empty."""
        if not labels:
            return no_label_score()
        return score(path, labels, tile, overlap, tta, request, progress)

    def sample(path: str | None, request: gr.Request | None = None,
               progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        """The sample tile segmented, with the label mask and score of an earlier image cleared (an example click is
        no upload, so the upload's own clearing does not run)."""
        return (*segment(path, request=request, progress=progress), None, *no_label_score())

    def reblend(kept: tuple[Segmentation, str] | None, opacity: float) -> Any:
        """A new opacity re-blends the kept screen copy (and the upload's name); the model does not run again."""
        return gr.skip() if kept is None else overlay_file(kept[0], float(opacity), kept[1], outputs.new())

    with gr.Blocks(title="FALSE segmentation demo", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## 🛰️ Aerial image segmentation\n"
                    f"Upload an aerial tile (PNG, JPEG, TIFF or GeoTIFF). Model: {net.description}.")
        result = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                upload = gr.File(label="Image (segmented as soon as it is uploaded)", file_count="single",
                                 type="filepath", height=140)
                opacity = QuietSlider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                with gr.Accordion("Inference settings", open=False):
                    tile = QuietDropdown(TILES, value=512, label="Tile (pixels)",
                                       info="window side of the sliding-window inference")
                    overlap = QuietSlider(0.0, 0.5, value=0.25, step=0.05, label="Overlap (fraction of the tile)")
                    tta = gr.Checkbox(False, label="Flip test-time augmentation (2x slower)")
                run = gr.Button("Segment again with these settings", variant="secondary")
                info = gr.Markdown(label="About the image")
            with gr.Column(scale=3):
                overlay = gr.Image(label="Overlay", type="filepath", interactive=False, height=480,
                                   buttons=["download", "fullscreen"])
                legend = gr.HTML(label="Legend")
        with gr.Row():
            areas = gr.Dataframe(pd.DataFrame(columns=API_AREA_COLUMNS),
                                 label="Area per class", interactive=False, scale=3)  # not "1 2 3" before an upload
            with gr.Column(scale=2):
                mask_file = gr.File(label="Mask (palette PNG: class indices in the class colours)", interactive=False)
                extra_files = gr.File(label="Areas CSV, report JSON, GeoTIFF mask", file_count="multiple", interactive=False)
        with gr.Accordion("Score against a label mask", open=False):
            labels = gr.File(label="Label mask of this image (class indices, class colours, or a palette PNG, read by "
                             "its colours in any palette order)", file_count="single", type="filepath", height=100)
            label_info = gr.Markdown(label="Scores against the label mask")  # named in the API (was value_25)
            label_iou = gr.Dataframe(label="IoU per class", interactive=False)
            # beside the score, not in the downloads above: a refused mask marks only the score's own outputs
            scored_report = gr.File(label="Report JSON with this score (label_score)", interactive=False)
        shown = [overlay, areas, mask_file, extra_files, info, result]
        scored = [label_info, label_iou, scored_report]
        segmented = [upload, opacity, tile, overlap, tta]
        call = upload.upload(segment, inputs=segmented, outputs=shown,
                             api_name="segment")  # before the examples, which would otherwise take the name
        call.failure(not_segmented, outputs=shown, api_visibility="private", show_progress="hidden")
        scoring = labels.upload(score, inputs=[upload, labels, tile, overlap, tta], outputs=scored, api_name="score")
        scoring.failure(not_scored, outputs=scored, api_visibility="private", show_progress="hidden")
        upload.upload(lambda: (None, *no_label_score()), outputs=[labels, *scored],
                      api_visibility="private", show_progress="hidden")  # another image: its own labels
        # Run segments the same image with other settings: the label score of the old result goes at once, and a
        # label mask already given scores the new result (kept by its settings, so it is not segmented twice)
        run.click(no_label_score, outputs=scored, api_visibility="private", show_progress="hidden")
        rerun = run.click(segment, inputs=segmented, outputs=shown, api_visibility="private")
        rerun.failure(not_segmented, outputs=shown, api_visibility="private", show_progress="hidden")
        rescoring = rerun.success(rescore, inputs=[upload, labels, tile, overlap, tta], outputs=scored,
                                  api_visibility="private")
        rescoring.failure(not_scored, outputs=scored, api_visibility="private", show_progress="hidden")
        gr.Examples([[_sample_tile(outputs.root)]], inputs=[upload], label=_sample_label(net.card), fn=sample,
                    outputs=[*shown, labels, *scored], run_on_click=True, cache_examples=False,
                    api_visibility="private")
        # the legend's swatches follow the kept result; HTML is for the page, not an API output
        result.change(lambda kept: "" if kept is None else legend_html(kept[0]), inputs=[result], outputs=[legend],
                      api_visibility="private", show_progress="hidden")
        opacity.release(reblend, inputs=[result, opacity], outputs=[overlay], api_name="overlay",
                        api_visibility="undocumented", show_progress="hidden")

        def on_leave(request: gr.Request) -> None:
            """A closed or reloaded tab, or an API client whose heartbeat stopped: its running work stops."""
            leaving.left(request.session_hash)

        demo.unload(on_leave)
    demo._false_outputs = outputs  # type: ignore[attr-defined] - closed by stop()
    return demo


def _sample_tile(root: Path) -> str:
    """A synthetic aerial scene (core.data.generate_scene) as a PNG, so a first visitor can try it in one click."""
    from core.data import generate_scene

    path = root / "sample_scene.png"
    path.write_bytes(generated_png(generate_scene(SAMPLE_SEED, 512)[0], f"core.data.generate_scene seed {SAMPLE_SEED}"))
    return str(path)


def _sample_label(card: dict[str, Any] | None) -> str:
    """Say so when the model was not trained on the synthetic classes: its answer on the sample will be rough."""
    from core.data import CLASSES

    if card is None:
        return "Try a generated sample tile (a synthetic scene; auto picks the model that fits it)"
    if [c.get("name") for c in card["classes"]] == [name for name, _ in CLASSES]:
        return "Try a generated sample tile (a synthetic scene like this model's training data)"
    return "Try a generated sample tile (a synthetic scene: this model was trained on other imagery)"


def theme() -> gr.themes.Base:
    """A quiet theme in the system fonts: nothing is fetched from a font CDN."""
    return gr.themes.Soft(primary_hue="indigo", font=THEME_FONT, font_mono=THEME_MONO)


def serve(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True,
          concurrency: int = CONCURRENCY, max_queue: int = MAX_QUEUE) -> str:
    """Launch ``demo`` locally (no share link, upload cap, ``concurrency`` requests at once and a bounded queue);
    return its URL."""
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    outputs = getattr(demo, "_false_outputs", None)  # the files it returns: gradio serves only allowed places, and
    # the data root (FALSE_WB_DATA) may lie outside both the working folder and the system's temp folder
    allowed = [str(outputs.root)] if outputs is not None else []
    # quiet: gradio's own lines end with how to make a public share link, which this offline demo never makes
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                            allowed_paths=allowed,
                            max_file_size=MAX_FILE_SIZE, theme=theme(), footer_links=["api"], quiet=True,
                            show_error=True, ssr_mode=False, mcp_server=False, inbrowser=False)
    if block:
        reach = "this machine only" if host in ("127.0.0.1", "localhost", "::1") else f"bound to {host}"
        print(f"FALSE segmentation demo on {url} ({reach}); its HTTP API: {url.rstrip('/')}/?view=api. "
              "Ctrl-C stops it.", flush=True)
        while demo.is_running:  # until Ctrl-C or SIGTERM (main turns both into a clean stop)
            time.sleep(0.2)
    return url


def stop(demo: gr.Blocks) -> None:
    """Close the server and remove the files this demo wrote."""
    demo.close()
    sweep_upload_leftovers()
    outputs = getattr(demo, "_false_outputs", None)
    if outputs is not None:
        outputs.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = demo_parser("python -m workbench.gradio_app").parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    wrong = ([f"--time-budget must be >= 0, got {args.time_budget:g}"] if args.time_budget < 0 else []) + \
        ([f"--concurrency must be from 1 to 64, got {args.concurrency}"] if not 1 <= args.concurrency <= 64 else [])
    if wrong:
        print("error: " + "; ".join(wrong), file=sys.stderr)
        return 2
    try:
        demo = build_demo(args.checkpoint, max_megapixels=args.max_megapixels,
                          time_budget_s=args.time_budget or None)
    except ValueError as err:  # a pixel budget out of range (CheckpointError is one too)
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a service stop closes and cleans up like Ctrl-C
    # this process serves requests only: the cores split between those served at once (oversubscribed threads
    # slow every request down); set here, not in serve(), which may run inside another program
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.concurrency))
    try:
        serve(demo, host=args.host, port=args.port, block=True, concurrency=args.concurrency)
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001 - a taken port, an unknown host: one line, no traceback
        print(f"error: cannot start the server on {args.host}:{args.port or 'default port'}: {one_line(err)}",
              file=sys.stderr)
        return 2
    finally:
        stop(demo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
