"""The leaderboard app's package: the pages' navigation, cached store reads, data shaping,
figures, the pair viewer's recompute, and one module per page (``views``)."""
