"""The DCGAN generator rewritten without ConvTranspose, for int8: the same function, in ops that have fast
int8 kernels in onnxruntime (QLinearConv, QGemm) and cheap data movement.

ONNX Runtime has no int8 ConvTranspose kernel: a quantized ConvTranspose runs dequantize -> fp32 -> quantize and is
slower than fp32. So each layer becomes:

  ConvTranspose2d(k=4, s=2, p=1)  ==  Conv2d(k=2, pad=1) to 4*C_out channels  ->  pixel shuffle  ->  crop 1

Output row 2i+a of the transposed convolution reads input rows {i-1, i} (a=0) or {i, i+1} (a=1): both are the two
rows of one 2x2 window of the padded input, at window m = i (a=0) or m = i+1 (a=1). So one 2x2 convolution over the
padded input computes, at window m, output rows 2m (sub-row 1) and 2m-1 (sub-row 0); interleaving the sub-rows
(pixel shuffle) gives rows -1 .. 2H, and cropping one row/column on each side leaves exactly the 2H x 2W output.
Cost: (H+1)^2 / H^2 times the transposed convolution's multiply-adds (1.56x at 4x4, 1.06x at 32x32).

The pixel shuffle is written channels-last: (B, H', W', 2, 2, C) -> (B, H', 2, W', 2, C) moves C-long runs, and
onnxruntime's NHWC int8 convolutions cancel the layout transposes around it. The first layer (1x1 -> 4x4) is a
plain matrix product. The last layer stays channels-last: images come out (B, H, W, 3) as the contract wants.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# KERNEL_TAP[sub][pos]: which ConvTranspose kernel row (or column) feeds sub-row `sub` from window row `pos`.
KERNEL_TAP = ((2, 0), (3, 1))


def shifted_conv(ct: nn.ConvTranspose2d) -> nn.Conv2d:
    """The 2x2 convolution whose 4*C_out output channels, ordered (sub_h, sub_w, c), are the four output phases."""
    w = ct.weight.detach()                                             # (C_in, C_out, 4, 4)
    c_in, c_out = w.shape[:2]
    k = w.new_empty(2, 2, c_out, c_in, 2, 2)                           # (sub_h, sub_w, c, c_in, pos_h, pos_w)
    for sh in range(2):
        for sw in range(2):
            for ph in range(2):
                for pw in range(2):
                    k[sh, sw, :, :, ph, pw] = w[:, :, KERNEL_TAP[sh][ph], KERNEL_TAP[sw][pw]].T
    conv = nn.Conv2d(c_in, 4 * c_out, 2, 1, 1, bias=ct.bias is not None)
    conv.weight.data = k.reshape(4 * c_out, c_in, 2, 2)
    if ct.bias is not None:
        conv.bias.data = ct.bias.detach().repeat(4)
    return conv


class SubPixelUp(nn.Module):
    """(B, C_in, H, W) -> activation(ConvTranspose2d(k4, s2, p1)), as (B, C, 2H, 2W) or channels-last."""

    def __init__(self, ct: nn.ConvTranspose2d, activation: nn.Module, in_size: int, channels_last_out: bool):
        super().__init__()
        if (ct.kernel_size, ct.stride, ct.padding, ct.output_padding) != ((4, 4), (2, 2), (1, 1), (0, 0)):
            raise ValueError(f"SubPixelUp handles ConvTranspose2d(k=4, s=2, p=1) only, got {ct}")
        self.conv, self.activation = shifted_conv(ct), activation
        self.windows, self.channels, self.channels_last_out = in_size + 1, ct.out_channels, channels_last_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = self.windows, self.channels
        y = self.activation(self.conv(x)).permute(0, 2, 3, 1)          # (B, H+1, W+1, 4C): elementwise first
        y = y.reshape(-1, n, n, 2, 2, c).permute(0, 1, 3, 2, 4, 5)     # (B, H+1, 2, W+1, 2, C)
        y = y.reshape(-1, 2 * n, 2 * n, c)[:, 1:-1, 1:-1, :]           # (B, 2H, 2W, C)
        return y if self.channels_last_out else y.permute(0, 3, 1, 2)  # (B, C, 2H, 2W)


class LatentProjection(nn.Module):
    """ConvTranspose2d(k, s=1, p=0) on a 1x1 input is a matrix product: (B, nz) -> (B, C, k, k)."""

    def __init__(self, ct: nn.ConvTranspose2d):
        super().__init__()
        w = ct.weight.detach()                                         # (nz, C, k, k)
        self.shape = tuple(w.shape[1:])
        self.linear = nn.Linear(w.shape[0], w[0].numel(), bias=ct.bias is not None)
        self.linear.weight.data = w.reshape(w.shape[0], -1).T.contiguous()
        if ct.bias is not None:
            self.linear.bias.data = ct.bias.detach().repeat_interleave(w.shape[2] * w.shape[3])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.flatten(1)).reshape(-1, *self.shape)     # (B, C, k, k)


def subpixel_net(folded: nn.Sequential) -> nn.Sequential:
    """z (B, nz, 1, 1) -> image (B, H, W, 3) channels-last, from a generator's ConvTranspose/ReLU/Tanh stack
    (BatchNorm already folded into the convolutions)."""
    layers, out, size, i = list(folded), [], 1, 0
    while i < len(layers):
        layer = layers[i]
        follower = layers[i + 1] if i + 1 < len(layers) else None
        activation = follower if isinstance(follower, (nn.ReLU, nn.Tanh)) else nn.Identity()
        if not isinstance(layer, nn.ConvTranspose2d):
            raise ValueError(f"unexpected layer {layer} in the generator")
        if size == 1:
            out += [LatentProjection(layer), activation]
            size = layer.kernel_size[0]
        else:
            is_last = i + (2 if activation is follower else 1) >= len(layers)
            out.append(SubPixelUp(layer, activation, size, channels_last_out=is_last))
            size *= 2
        i += 2 if activation is follower else 1
    return nn.Sequential(*out)
