"""Load the trained MNIST model and turn an image into a digit."""
import io
import os

import joblib
import numpy as np
from PIL import Image, UnidentifiedImageError

HERE = os.path.dirname(os.path.abspath(__file__))

HOW_TO_SEND = "send the file with curl --data-binary @file, not -d (which strips its line breaks)"


class BadInput(ValueError):
    """The request's body is not something this model can read; the message says why (a 400, not a 500)."""


def load_ctx(model_path):
    """Load the context saved by `train`: {"model": SVC, "scaler": StandardScaler}.

    A relative path is looked up next to this file (where kaos puts the trained model's files).
    """
    model_path = os.path.join(HERE, model_path)
    ctx = joblib.load(model_path)
    return ctx


def decode_image(image_bytes):
    """The body as a grayscale PIL image; raises BadInput when it is empty or not a decodable image."""
    if not image_bytes:
        raise BadInput("The body is empty: " + HOW_TO_SEND)
    try:
        image = Image.open(io.BytesIO(image_bytes))
        image.load()  # decode every pixel now: a truncated or mangled file fails here, not later
        return image.convert("L")
    except UnidentifiedImageError:
        reason = "cannot identify image file"
    except Image.DecompressionBombError as error:
        raise BadInput("The image is too large: %s" % error) from None
    except (OSError, SyntaxError, ValueError) as error:  # what Pillow's decoders raise on broken data
        reason = str(error) or type(error).__name__
    raise BadInput("The body is not an image (PIL: %s): %s" % (reason, HOW_TO_SEND))


def image_to_features(image_bytes):
    """Any image -> one row of 64 pixels on the training data's scale (0 = background, 16 = ink).

    The image is converted to grayscale and averaged down to 8x8. A light background (e.g. dark ink on
    paper, like test_payload.jpg) is inverted so that the background becomes 0, as in the training data.
    Raises BadInput when the bytes are not an image.
    """
    image = decode_image(image_bytes)
    pixels = np.asarray(image.resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    if border.mean() > 127:
        pixels = 255.0 - pixels
    return (pixels * 16.0 / 255.0).reshape(1, -1)


def predict(ctx, image_bytes):
    """The predicted digits, as a list of ints. Raises BadInput when the bytes are not an image."""
    features = ctx["scaler"].transform(image_to_features(image_bytes))
    return [int(digit) for digit in ctx["model"].predict(features)]
