"""The leaderboard app's pages, one module each.

A page module defines ``TITLE``, ``ICON`` (a Material icon or emoji), ``URL_PATH`` and
``render(db_path: str) -> None`` that opens with ``loaders.page_start``;
``navigation.PAGES`` lists the module names.
"""
