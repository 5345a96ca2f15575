#!/usr/bin/env python3
"""The seed's PyTorch loop (SimpleCNN, batch 64, Adam lr 1e-3) with autocast fp16 + GradScaler,
one epoch on data/MNIST/raw, timed like `halfscale train`: prints one `BENCH` line.
Reads the IDX files directly (no torchvision). Usage: scripts/seed_mnist_amp.py [DATA_DIR]"""
import gzip, os, struct, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def find(d, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    sys.exit(f"missing {stem} in {d}")


class SimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5)
        self.conv2 = nn.Conv2d(32, 64, 5)
        self.fc1 = nn.Linear(1024, 128)
        self.fc2 = nn.Linear(128, 10)

    def logits(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)

    def forward(self, x):
        return F.log_softmax(self.logits(x), dim=1)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "data/MNIST/raw"
    dev = torch.device("cuda")
    torch.manual_seed(1)
    images = idx(find(d, "train-images-idx3-ubyte")).float().div_(255.0).unsqueeze(1)
    labels = idx(find(d, "train-labels-idx1-ubyte")).long()
    # The data is put on the GPU once, as halfscale does; the loop is the seed's.
    images, labels = images.to(dev), labels.to(dev)
    model = SimpleCNN().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    n, bs = labels.shape[0], 64
    perm = torch.randperm(n, device=dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    steps = 0
    for batch_idx, start in enumerate(range(0, n, bs)):
        ix = perm[start:start + bs]
        data, target = images[ix], labels[ix]
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            output = model(data)
            loss = F.nll_loss(output, target)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        steps += 1
        if batch_idx % 100 == 0:
            print(f"Train: [{start}/{n}]\tLoss: {loss.item():.6f}", file=sys.stderr)
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    print(f"BENCH pytorch-amp epoch: {steps} steps in {secs:.3f} s ({steps / secs:.1f} steps/s), "
          f"torch {torch.__version__}, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
