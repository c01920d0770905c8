import numpy as np, time, statistics, sys, fastnn, fastnn.nn as nn
import fastnn.backends.numba as nb
from fastnn.backends.numba import config as cfg
from fastnn.data import load_cat_data
dt=np.dtype(sys.argv[1] if len(sys.argv)>1 else "float32")
X, Y, _, _, _ = load_cat_data(None, layout="nhwc", dtype=dt); Y=Y.reshape(-1,1).astype(dt)
def old_empty(shape, dtype):
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + cfg.ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % cfg.ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)
def old_pack(M, T):
    K = M.shape[-1]; nkb = -(-K // T)
    if K % T == 0: blocks = M.reshape(M.shape[:-1] + (nkb, T))
    else:
        k0 = np.minimum(np.arange(nkb) * T, K - T); blocks = M[..., k0[:, None] + np.arange(T)]
    blocks = np.moveaxis(blocks, -2, 0)
    out = old_empty(blocks.shape, M.dtype); out[...] = blocks
    return out
new=(nb._aligned_empty, nb._pack_channels); old=(old_empty, old_pack)
def setv(v): nb._aligned_empty, nb._pack_channels = v
model = nn.make_cnn(X.shape[1:], dtype=dt, seed=0)
loss, opt = nn.BinaryCrossEntropy(), nn.Adam(lr=0.001)
nn.train_epoch(model, loss, opt, X, Y, batch_size=16, seed=0, epoch=0)
def ep(v):
    setv(v); t=time.perf_counter()
    for e in range(3): nn.train_epoch(model, loss, opt, X, Y, batch_size=16, seed=0, epoch=e+1)
    return (time.perf_counter()-t)/3
rs=[]; to=[]; tn=[]
for i in range(int(sys.argv[2]) if len(sys.argv)>2 else 9):
    if i%2: b=ep(new); a=ep(old)
    else: a=ep(old); b=ep(new)
    rs.append(a/b); to.append(a); tn.append(b)
setv(new)
print(dt.name, f"epoch old {statistics.median(to)*1e3:.1f} ms new {statistics.median(tn)*1e3:.1f} ms  old/new {statistics.median(rs):.3f} [{min(rs):.3f},{max(rs):.3f}]")
