"""napari plugin (``pip install -e .[napari]``): open a CT with its true geometry, draw prompts
(points, 2D boxes, lassos, scribbles) in napari layers, get the masks as a Labels layer.

* :mod:`.geometry`: the napari transform of a SimpleITK image (no napari import).
* :mod:`.reader`: the npe2 reader (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``, DICOM folders).
* :mod:`.controller`: :class:`~.controller.NapariSegmenter`, the session behind the layers.
* :mod:`.widget`: the dock widget (apply, new object, undo, export).

napari world coordinates here are LPS millimetres in napari's axis order ``(z, y, x)`` = LPS
reversed (S, P, L). Image and Labels layers hold the array as ``sitk.GetArrayFromImage`` gives
it (``[k, j, i]``), with ``scale`` = spacing, ``translate`` and (for a non-identity direction)
``affine`` = the direction, so they sit where the file says in the world. The prompt layers
(Points, Shapes) carry the same transform: their data are continuous voxel indices
``(k, j, i)`` of the CT (:func:`.geometry.index_to_lps` gives LPS; ``layer.data_to_world`` the
world position, LPS reversed), so the dims slider steps through the CT's slices.
"""
