"""The parts of a session step that only shape prompts (2D box, lasso, scribble) have.

:meth:`Session._interact` runs a shape like a click (its first click picks and decodes the
first patch, then expansion and the input-grid mask update); these hooks add the rest:

* :func:`before_decode`: the shape's other clicks join the object, and a positive lasso's
  inside is written into the stored probabilities (the previous-mask channel);
* :func:`cover`: each click of the shape outside the patches decoded so far gets its patch
  (see :mod:`.shape_render`), decoded with the object's clicks there and the rule's clip;
* :func:`after_decode`: the slice rule written into the lattice store;
* :func:`after_mask`: the slice rule applied exactly to the input-grid mask.
"""

from __future__ import annotations

from .shape_render import ShapePrompt

__all__ = ["before_decode", "cover", "after_decode", "after_mask"]


def before_decode(shape: ShapePrompt, obj) -> None:
    obj.clicks.extend(shape.clicks[1:])
    if shape.seed and shape.rule is not None:
        shape.rule.seed(obj.store)


def cover(shape: ShapePrompt, session, obj, first_start, timer) -> list:
    """Decode a patch for every click of the shape not well inside a patch decoded in this step
    (at most ``rendering.max_patches`` patches in all); returns the starts decoded here."""
    done = [tuple(first_start)]
    size = session.patch_size
    clip = None if shape.rule is None else shape.rule.clip
    for click in shape.clicks[1:]:
        if len(done) >= max(1, shape.rendering.max_patches):
            break
        start, is_new = session._choose_patch(obj, click)
        if start in done:
            continue
        # a click near the face of a patch decoded in this step is covered by it
        if is_new and any(all(0 <= c - s < n for c, s, n in zip(click.zyx, d, size)) for d in done):
            continue
        pos, neg = obj.clicks_in(start, size)
        prev = obj.store.read(start, size)
        probs, _ = session._runner.segment([start], [pos], [neg], [prev if prev.max() > 0 else None], timer)
        p = probs[0] if clip is None else clip(start, probs[0])
        obj.store.write(start, p, mode="max" if (is_new and click.positive) else "replace")
        if start not in obj.patches:
            obj.patches.append(start)
        done.append(start)
    return done[1:]


def after_decode(shape: ShapePrompt, obj) -> None:
    if shape.rule is not None:
        shape.rule.enforce(obj.store)


def after_mask(shape: ShapePrompt, obj) -> None:
    if shape.rule is not None:
        shape.rule.apply_to_mask(obj.mask)
        obj.mask_is_paste = False  # the slice's exact cut is not the lattice's paste (like a box's clip)
