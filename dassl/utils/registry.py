"""Name -> class registries; plugins register with a decorator keyed by class name."""


class Registry:
    def __init__(self, name):
        self._name = name
        self._obj_map = {}

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered in "{self._name}" registry '
                f"({self._obj_map[name].__module__}); pick another class name"
            )
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        if obj is None:  # used as @REGISTRY.register()
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name):
        if name not in self._obj_map:
            raise KeyError(
                f'No object named "{name}" found in "{self._name}" registry; '
                f"registered: {', '.join(self.registered_names()) or '(none)'}"
            )
        return self._obj_map[name]

    def registered_names(self):
        return sorted(self._obj_map)

    def __contains__(self, name):
        return name in self._obj_map
