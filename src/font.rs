//! The one typeface every chart is drawn in, DejaVu Sans, built into the binary: charts look
//! the same on every machine, and drawing them needs no fontconfig, freetype or installed font
//! (the GPU machine had no fontconfig configuration at all).

use std::sync::Once;

use plotters::style::FontStyle;

static DEJAVU_SANS: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Makes "sans-serif" (every style) DejaVu Sans; the first call registers it, later ones do nothing.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_err() {
            unreachable!("the built-in DejaVu Sans is a valid TrueType font");
        }
    });
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    #[test]
    fn text_is_drawn_in_the_built_in_font() {
        super::register();
        let font = ("sans-serif", 20).into_font();
        let (w, h) = font.box_size("val_acc").expect("the font is registered");
        assert!(w > 40 && h > 10, "a 20-point word measures {w}×{h} pixels");

        // Text leaves dark pixels on a white canvas, in a bold style too (it falls back to normal).
        let mut pixels = vec![255u8; 200 * 60 * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (200, 60)).into_drawing_area();
            root.draw(&Text::new("Optimization", (5, 5), ("sans-serif", 24).into_font())).unwrap();
            root.draw(&Text::new("history", (5, 32), ("sans-serif", 18, FontStyle::Bold).into_font())).unwrap();
            root.present().unwrap();
        }
        let dark_top = pixels[..200 * 30 * 3].chunks(3).filter(|p| p[0] < 128).count();
        let dark_bottom = pixels[200 * 30 * 3..].chunks(3).filter(|p| p[0] < 128).count();
        assert!(dark_top > 100 && dark_bottom > 50, "dark pixels: {dark_top} above, {dark_bottom} below");
    }
}
