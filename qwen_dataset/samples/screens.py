"""The sample GUI screenshots (login, search, checkout, settings, dashboard) in English and Chinese."""

from __future__ import annotations

import random
from collections.abc import Callable

from qwen_dataset.samples.drawing import (
    TITLE_BAR_HEIGHT,
    Canvas,
    Theme,
    draw_button,
    draw_input,
    draw_label,
    draw_link,
    draw_paragraph,
    draw_window,
    jitter,
)

USER_NAMES = ("zhang.wei", "li.na", "wang.fang", "alice.chen", "bob.smith", "liu.yang", "chen.jing")
PRODUCTS = (
    ("无线鼠标", "Wireless mouse"),
    ("机械键盘", "Mechanical keyboard"),
    ("显示器支架", "Monitor arm"),
    ("降噪耳机", "Noise cancelling headphones"),
    ("移动硬盘", "Portable SSD"),
    ("电源适配器", "Power adapter"),
    ("网络摄像头", "Webcam"),
    ("笔记本电脑包", "Laptop sleeve"),
)
EN_SENTENCES = (
    "Enter your username and password to continue.",
    "Orders placed before 6 pm ship the same day.",
    "Your session expires after thirty minutes of inactivity.",
    "Results are sorted by relevance; use the filters to narrow them down.",
    "Annotations are reviewed by two people before they are released.",
    "Changes are saved automatically every few seconds.",
)
ZH_SENTENCES = (
    "请输入用户名和密码后点击登录。",
    "订单提交后将在二十四小时内发货。",
    "搜索结果按相关度排序，可以使用筛选条件缩小范围。",
    "所有标注在发布前都经过两位审核员检查。",
    "系统每隔几秒钟自动保存您的修改。",
    "如需帮助，请联系在线客服。",
)


def open_window(
    rng: random.Random,
    theme: Theme,
    size: tuple[int, int],
    title: str,
    origin: tuple[int, int],
    spread: tuple[int, int] = (16, 16),
) -> tuple[Canvas, int, int]:
    """A blank window with its title bar, and where its content starts (jittered, as a real layout varies)."""
    canvas = Canvas(*size, theme.window)
    top = draw_window(canvas, theme, title)
    x = origin[0] + jitter(rng, spread[0])
    y = top + origin[1] + jitter(rng, spread[1])
    return canvas, x, y


def screen_login(rng: random.Random, theme: Theme, size: tuple[int, int] = (1280, 800)) -> Canvas:
    canvas, x, y = open_window(rng, theme, size, "登录 - Acme Portal", origin=(120, 60), spread=(40, 16))
    canvas.text((x, y), "欢迎回来 Welcome back", 34, theme.text)
    y += 80
    draw_label(canvas, (x, y), "用户名 Username", theme)
    draw_input(canvas, (x, y + 40, x + 520, y + 92), rng.choice(USER_NAMES), "请输入用户名", theme)
    y += 130
    draw_label(canvas, (x, y), "密码 Password", theme)
    draw_input(canvas, (x, y + 40, x + 520, y + 92), "", "Enter your password", theme)
    y += 140
    draw_button(canvas, (x, y, x + 240, y + 56), "登录", theme)
    draw_button(canvas, (x + 280, y, x + 520, y + 56), "Sign in", theme, primary=False)
    y += 90
    draw_link(canvas, (x, y), "忘记密码?", theme)
    draw_link(canvas, (x + 200, y), "Forgot password?", theme)
    side = x + 640
    draw_paragraph(canvas, side, TITLE_BAR_HEIGHT + 160, size[0] - side - 60, rng.choice(EN_SENTENCES), theme)
    draw_paragraph(canvas, side, TITLE_BAR_HEIGHT + 300, size[0] - side - 60, rng.choice(ZH_SENTENCES), theme)
    return canvas


def screen_search(rng: random.Random, theme: Theme, size: tuple[int, int] = (1366, 768)) -> Canvas:
    canvas, x, y = open_window(rng, theme, size, "商品搜索 Product search", origin=(60, 40))
    query = rng.choice(PRODUCTS)
    draw_input(canvas, (x, y, x + 760, y + 56), query[0], "搜索商品 Search products", theme, size=22)
    draw_button(canvas, (x + 790, y, x + 960, y + 56), "搜索", theme)
    draw_button(canvas, (x + 990, y, x + 1160, y + 56), "Reset", theme, primary=False)
    y += 100
    canvas.text((x, y), f"找到 {rng.randrange(3, 60)} 个结果", 22, theme.muted)
    y += 50
    for zh, en in rng.sample(PRODUCTS, 4):
        canvas.draw.rectangle((x, y, x + 1160, y + 96), fill=theme.panel)
        draw_label(canvas, (x + 24, y + 14), zh, theme, size=24)
        draw_link(canvas, (x + 24, y + 56), en, theme)
        price = f"¥{rng.randrange(39, 2999)}.00"
        canvas.text((x + 1000, y + 30), price, 24, theme.text)
        y += 116
    return canvas


def screen_checkout(rng: random.Random, theme: Theme, size: tuple[int, int] = (1024, 1366)) -> Canvas:
    canvas, x, y = open_window(rng, theme, size, "确认订单 Checkout", origin=(64, 50))
    canvas.text((x, y), "购物车 Shopping cart", 32, theme.text)
    y += 80
    total = 0
    for zh, en in rng.sample(PRODUCTS, 3):
        price = rng.randrange(49, 899)
        total += price
        draw_label(canvas, (x, y), f"{zh} {en}", theme)
        canvas.text((x + 720, y), f"¥{price}", 22, theme.text)
        y += 60
    canvas.draw.line((x, y, x + 860, y), fill=theme.input_border, width=2)
    y += 30
    canvas.text((x, y), f"合计 Total: ¥{total}", 26, theme.text)
    y += 90
    draw_label(canvas, (x, y), "收货地址 Shipping address", theme)
    draw_input(canvas, (x, y + 40, x + 860, y + 96), "", "请输入详细地址", theme)
    y += 140
    draw_label(canvas, (x, y), "备注 Note", theme)
    draw_input(canvas, (x, y + 40, x + 860, y + 96), "Leave at the front desk", "", theme)
    y += 150
    y = draw_paragraph(canvas, x, y, 860, rng.choice(ZH_SENTENCES), theme)
    y = draw_paragraph(canvas, x, y + 10, 860, rng.choice(EN_SENTENCES), theme)
    y += 60
    draw_button(canvas, (x, y, x + 400, y + 64), "提交订单", theme, size=26)
    draw_button(canvas, (x + 460, y, x + 860, y + 64), "Continue shopping", theme, primary=False)
    return canvas


def screen_settings(rng: random.Random, theme: Theme, size: tuple[int, int] = (800, 600)) -> Canvas:
    canvas, x, y = open_window(rng, theme, size, "设置 Settings", origin=(48, 36), spread=(16, 10))
    options = [("语言 Language", "简体中文"), ("时区 Time zone", "UTC+08:00"), ("通知 Notifications", "On")]
    for label, value in options:
        draw_label(canvas, (x, y), label, theme)
        draw_input(canvas, (x + 330, y - 10, x + 680, y + 40), value, "", theme)
        y += 80
    y = draw_paragraph(canvas, x, y + 10, 680, rng.choice(EN_SENTENCES), theme)
    draw_button(canvas, (x, y + 30, x + 200, y + 84), "保存", theme)
    draw_button(canvas, (x + 230, y + 30, x + 430, y + 84), "Cancel", theme, primary=False)
    return canvas


def screen_dashboard(rng: random.Random, theme: Theme, size: tuple[int, int] = (1280, 720)) -> Canvas:
    canvas, x, y = open_window(rng, theme, size, "监控面板 Dashboard", origin=(60, 40))
    canvas.text((x, y), "今日概览 Today", 30, theme.text)
    y += 80
    for index, (zh, en) in enumerate((("上传", "Uploads"), ("待审核", "Pending review"), ("已发布", "Released"))):
        left = x + index * 380
        canvas.draw.rounded_rectangle((left, y, left + 340, y + 150), radius=10, fill=theme.panel)
        draw_label(canvas, (left + 24, y + 20), f"{zh} {en}", theme)
        canvas.text((left + 24, y + 70), f"{rng.randrange(10, 9999):,}", 44, theme.text)
    y += 200
    draw_paragraph(canvas, x, y, 1100, rng.choice(ZH_SENTENCES), theme)
    draw_button(canvas, (x, y + 80, x + 220, y + 136), "刷新", theme)
    draw_button(canvas, (x + 250, y + 80, x + 470, y + 136), "Export", theme, primary=False)
    return canvas


SCREENS: tuple[tuple[str, Callable[..., Canvas]], ...] = (
    ("screen_1_login.png", screen_login),
    ("screen_2_search.png", screen_search),  # 1366x768: not a multiple of the usual patch sizes
    ("screen_3_checkout.png", screen_checkout),  # portrait
    ("screen_4_settings.png", screen_settings),
)
