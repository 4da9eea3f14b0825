"""Hover a point of an embedding explorer (:mod:`dinoxfer_lib.pl.explorer`) in a browser and read its tooltip.

Works on a standalone explorer page and on one shown in an iframe of a book page; the book checker calls it for
every explorer it finds.
"""

from __future__ import annotations

from dataclasses import dataclass

from dinoxfer_lib.pl.explorer import TOOLTIP_CLASS

# Run in the explorer's document: the page position of point `i` of the scatter plot named "embedding".
_POINT_POSITION_JS = """(i) => {
  const find = (view) => view.model.name === "embedding" ? view : (view.child_views ?? []).map(find).find(Boolean);
  const plot = Bokeh.index.roots.map(find).find(Boolean);
  if (!plot) return null;
  const data = plot.model.renderers[0].data_source.data;
  const box = plot.canvas_view.el.getBoundingClientRect();
  return {x: box.left + plot.frame.x_scale.compute(data.x[i]), y: box.top + plot.frame.y_scale.compute(data.y[i]),
          image_id: data.image_id[i]};
}"""
_READY_JS = "() => window.Bokeh !== undefined && Bokeh.index !== undefined && Bokeh.index.roots.length > 0"


@dataclass(frozen=True)
class Tooltip:
    """What hovering one point showed."""

    image_id: str
    text: str
    image_width: int  # natural width of the thumbnail in pixels; 0 when it did not load or there is none


def hover_point(frame, index: int = 0, *, timeout_ms: float = 20_000) -> Tooltip:
    """Move the mouse onto point ``index`` of the explorer in ``frame`` and return the tooltip it shows.

    Parameters
    ----------
    frame
        A Playwright ``Page`` with a standalone explorer, or the ``Frame`` of an explorer's iframe.
    index
        Which point (row of the plot's data).
    timeout_ms
        How long to wait for Bokeh to render and for the tooltip.

    Raises
    ------
    LookupError
        When the frame holds no explorer or no tooltip appears.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = frame.page
    offset_x = offset_y = 0.0
    if frame.parent_frame is not None:  # an iframe: page coordinates = its box + coordinates inside it
        element = frame.frame_element()
        element.scroll_into_view_if_needed()
        box = element.bounding_box()
        offset_x, offset_y = box["x"], box["y"]
    try:
        frame.wait_for_function(_READY_JS, timeout=timeout_ms)
    except PlaywrightTimeout:
        raise LookupError("no Bokeh document rendered in the frame") from None
    point = frame.evaluate(_POINT_POSITION_JS, index)
    if point is None:
        raise LookupError("the frame has no explorer plot (a Bokeh figure named 'embedding')")
    x, y = offset_x + point["x"], offset_y + point["y"]
    page.mouse.move(x - 6, y - 6)  # Bokeh reacts to movement, not to a pointer that appears on the point
    page.mouse.move(x, y, steps=3)
    # Bokeh draws tooltips in shadow roots; Playwright's CSS locators reach into them
    tooltip = frame.locator(f".{TOOLTIP_CLASS}").filter(has_text=point["image_id"]).first
    try:
        tooltip.wait_for(state="visible", timeout=timeout_ms)
    except PlaywrightTimeout:
        raise LookupError(f"hovering point {index} ({point['image_id']}) showed no tooltip") from None
    image = tooltip.locator("img")
    # decode() settles once the data URL is decoded (or failed to), so a slow decode is not read as a missing image
    width = image.first.evaluate("(img) => img.decode().then(() => img.naturalWidth, () => 0)") if image.count() else 0
    return Tooltip(image_id=point["image_id"], text=tooltip.inner_text(), image_width=width)
