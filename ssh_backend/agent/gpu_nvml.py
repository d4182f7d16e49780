"""The NVML GPU backend through ``pynvml`` (nvidia-ml-py), kept initialised for the
agent's lifetime. Stdlib plus pynvml only, Python >= 3.8.

Memory uses the v2 query where the library has it: v1 counts the driver's reserved memory
as used (an idle H100 reads 480 MiB while nvidia-smi says 0). PCIe throughput is never
read: it costs about 20 ms per call. A field the GPU does not support is asked once and
then left out (None) instead of paying for the failing call every sample.
"""

import procinfo
import wire

MIB = 1024.0 * 1024.0
# pynvml's code for NVML_ERROR_LIB_RM_VERSION_MISMATCH, should a copy lack the constant.
_RM_MISMATCH = 18
# The errors by which a driver says it has no memory-info v2 (rather than a passing fault).
_NO_V2 = ("NVMLError_FunctionNotFound", "NVMLError_NotSupported",
          "NVMLError_ArgumentVersionMismatch")


class Unavailable(Exception):
    """NVML cannot be used on this host (no library, no driver, no permission)."""


def _mib(value):
    number = wire.num(value)
    return None if number is None else number / MIB


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class NvmlBackend:
    name = "nvml"
    simulated = False

    def __init__(self, nvml=None):
        if nvml is None:
            try:
                import pynvml as nvml
            except Exception as exc:  # ImportError, or a broken copy
                raise Unavailable("pynvml not importable: %s" % exc) from None
        self._nvml = nvml
        self._handles = []
        self._unsupported = set()
        self._mem_v2 = getattr(nvml, "nvmlMemory_v2", None)
        self.needs_reboot = False
        self.statics = []
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) == getattr(
                nvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", _RM_MISMATCH
            ):
                self.needs_reboot = True
                self.detail = "NVML: Driver/library version mismatch (%s)" % exc
                return
            raise Unavailable("NVML: %s" % exc) from None
        except OSError as exc:
            raise Unavailable("NVML: %s" % exc) from None
        try:
            version = _text(nvml.nvmlSystemGetNVMLVersion())
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            count = nvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                self._handles.append(handle)
                total = self._memory(index, handle)[1]
                self.statics.append(wire.gpu_static(
                    index, _text(nvml.nvmlDeviceGetUUID(handle)),
                    _text(nvml.nvmlDeviceGetName(handle)), total,
                    self._call(index, "limit", nvml.nvmlDeviceGetEnforcedPowerLimit,
                               handle, scale=1000.0)))
        except nvml.NVMLError as exc:
            self._shutdown()
            raise Unavailable("NVML: %s" % exc) from None
        self.detail = "NVML %s, driver %s" % (version, driver)

    def _call(self, index, field, fn, *args, **kwargs):
        """One reading, None if unsupported or failing; unsupported ones are not retried."""
        scale = kwargs.pop("scale", 1.0)
        if (index, field) in self._unsupported:
            return None
        try:
            value = fn(*args, **kwargs)
        except self._nvml.NVMLError as exc:
            if type(exc).__name__ == "NVMLError_NotSupported":
                self._unsupported.add((index, field))
            return None
        except Exception:
            return None
        number = wire.num(value)
        return None if number is None else number / scale

    def _memory(self, index, handle):
        """(used MiB, total MiB), v2 semantics when the library and driver allow it."""
        nvml = self._nvml
        if self._mem_v2 is not None:
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle, version=self._mem_v2)
                return _mib(info.used), _mib(info.total)
            except nvml.NVMLError as exc:
                if type(exc).__name__ not in _NO_V2:
                    return None, None
                # Old drivers lack nvmlDeviceGetMemoryInfo_v2: fall back to v1 for good.
                self._mem_v2 = None
            except Exception:
                return None, None
        try:
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            return _mib(info.used), _mib(info.total)
        except Exception:
            return None, None

    def _utilisation(self, index, handle):
        if (index, "util") in self._unsupported:
            return None
        try:
            return wire.num(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except self._nvml.NVMLError as exc:
            if type(exc).__name__ == "NVMLError_NotSupported":
                self._unsupported.add((index, "util"))
            return None
        except Exception:
            return None

    def _processes(self, handle):
        nvml = self._nvml
        found = {}
        for getter in ("nvmlDeviceGetComputeRunningProcesses",
                       "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(nvml, getter, None)
            if fn is None:
                continue
            try:
                infos = fn(handle)
            except Exception:
                continue
            for info in infos:
                pid = getattr(info, "pid", None)
                if not isinstance(pid, int) or pid in found:
                    continue
                used = wire.num(getattr(info, "usedGpuMemory", None))
                found[pid] = None if used is None else used / MIB
        processes = []
        for pid in sorted(found):
            user, command = procinfo.describe(pid)
            processes.append(wire.gpu_process(pid, user, command, found[pid]))
        return processes

    def read(self):
        nvml = self._nvml
        readings = []
        for position, static in enumerate(self.statics):
            handle = self._handles[position]
            index = static["index"]
            try:
                used, total = self._memory(index, handle)
                readings.append(wire.gpu_reading(
                    index, static["uuid"],
                    util_pct=self._utilisation(index, handle),
                    mem_used_mib=used,
                    mem_total_mib=total,
                    temp_c=self._call(index, "temp", nvml.nvmlDeviceGetTemperature, handle,
                                      getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
                    power_w=self._call(index, "power", nvml.nvmlDeviceGetPowerUsage, handle,
                                       scale=1000.0),
                    power_limit_w=self._call(index, "limit",
                                             nvml.nvmlDeviceGetEnforcedPowerLimit, handle,
                                             scale=1000.0),
                    fan_pct=self._call(index, "fan", nvml.nvmlDeviceGetFanSpeed, handle),
                    processes=self._processes(handle),
                ))
            except Exception:
                readings.append(wire.empty_reading(static))
        return readings

    def set_interval(self, interval_s):
        pass  # NVML is polled on demand: nothing to change

    def drain_errors(self):
        return []

    def _shutdown(self):
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass

    def close(self):
        if not self.needs_reboot:
            self._shutdown()
