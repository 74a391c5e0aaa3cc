# No plugins, 10 routes: the baseline every plugin case is compared with.
