"""The engines that run the iteration DAG: embedded (:mod:`.local`) and Argo (:mod:`.argo`)."""
