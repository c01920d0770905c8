"""NCHW / NHWC forward time of single-image (and two-image) layers, numba pinned, float32, 2 threads:
the two calls alternate in blocks of 9 (order swapped every other round), 8 rounds; median and range of the
per-round ratios. python3 docs/bench/2026-12-06-nchw-m1.py"""
import time, numpy as np, fastnn
def t(f, r=9):
    ts=[]
    for _ in range(r):
        a=time.perf_counter(); f(); ts.append(time.perf_counter()-a)
    return np.median(ts)*1e3
for (m,H,C,K,s) in [(1,56,64,64,1),(1,28,128,128,1),(1,14,256,256,1),(2,28,256,256,2)]:
  for dt in (np.float32,):
    rng=np.random.default_rng(0)
    A=rng.standard_normal((m,H,H,C)).astype(dt); Wt=rng.standard_normal((3,3,C,K)).astype(dt); b=np.zeros(K,dt)
    An=np.ascontiguousarray(A.transpose(0,3,1,2)); Wn=np.ascontiguousarray(Wt.transpose(3,2,0,1))
    f1=lambda: fastnn.conv_forward(A,Wt,b,{"stride":s,"pad":1},backend="numba"); f2=lambda: fastnn.conv_forward(An,Wn,b,{"stride":s,"pad":1,"layout":"NCHW"},backend="numba")
    f1(); f2()
    rs=[]
    for r in range(8):
        if r%2: c=t(f2); a=t(f1)
        else: a=t(f1); c=t(f2)
        rs.append(c/a)
    print((m,H,C,K,s), dt.__name__, "fwd nchw/nhwc median %.3f range %.2f-%.2f  (nhwc %.3f ms)"%(np.median(rs),min(rs),max(rs),a))
