"""Owns the storage of task events, one store per shape: scalar series in blocks with chart overviews
(``scalars.py``), console lines in blocks under a head per task (``logs.py``), and plots, debug images
and vectors one document per event (``events.py``). The shapes are declared in ``database/model/event.py``;
what the stored events mean (charts, pages, navigation, access) is ``bll/events``'."""
