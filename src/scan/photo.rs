//! Where in a listing something is: a photo or one of its regions (`PhotoRef`), and a part of a
//! photo (`Place`).

use std::collections::HashMap;
use std::fmt;

use crate::vision::regions;

/// A listing photo, or one of its regions (`regions::REGIONS`, `regions::INSET`,
/// `regions::STRAIGHTENED`), as the queries and local features of a listing are named. Written
/// `photo` or `photo#region` (`Display`), as a match's `listing_image` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhotoRef {
    /// The listing photo (path or URL as given).
    pub photo: String,
    /// The region of it; none for the whole photo.
    pub region: Option<&'static str>,
}

impl PhotoRef {
    /// The whole photo.
    pub fn whole(photo: String) -> PhotoRef {
        PhotoRef { photo, region: None }
    }

    /// A region of the photo.
    pub fn region(photo: String, region: &'static str) -> PhotoRef {
        PhotoRef { photo, region: Some(region) }
    }

    /// Reads the written form back (a match's `listing_image`): a suffix `#region` that names a
    /// region is taken as that region; anything else is a whole photo.
    pub fn parse(written: &str) -> PhotoRef {
        match written.rsplit_once('#').and_then(|(p, r)| Some((p, known_region(r)?))) {
            Some((photo, region)) => PhotoRef::region(photo.to_string(), region),
            None => PhotoRef::whole(written.to_string()),
        }
    }
}

impl fmt::Display for PhotoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.region {
            Some(region) => write!(f, "{}#{region}", self.photo),
            None => f.write_str(&self.photo),
        }
    }
}

/// The region named `name`, if there is one.
fn known_region(name: &str) -> Option<&'static str> {
    [regions::INSET, regions::STRAIGHTENED].into_iter().chain(regions::REGIONS).find(|r| *r == name)
}

/// Where each query's and local-feature photo's part (`PhotoRef`) lies in its listing photo.
pub(super) type Places = HashMap<PhotoRef, regions::Area>;

/// Where in a listing something was found: a photo and the part of it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Place {
    /// The listing photo.
    pub photo: String,
    /// The part of it.
    pub area: regions::Area,
}

/// How far an inlier box is widened on each side (shares of the photo), so a few points in a line
/// still cover an area.
const SPOT_MARGIN: f32 = 0.02;

/// Share of the smaller of two places that must lie in the other for them to overlap.
const OVERLAP: f32 = 0.5;

impl Place {
    /// Where `name` lies (`places`), if known.
    pub fn of(places: &Places, name: &PhotoRef) -> Option<Place> {
        places.get(name).map(|area| Place { photo: name.photo.clone(), area: *area })
    }

    /// `spot` (shares of the part `area` of `photo`) as a place in the photo, widened by
    /// `SPOT_MARGIN`.
    pub fn within(photo: &str, area: regions::Area, spot: [f32; 4]) -> Place {
        let (w, h) = (area[2] - area[0], area[3] - area[1]);
        let x = |share: f32, m: f32| (area[0] + share * w + m).clamp(0.0, 1.0);
        let y = |share: f32, m: f32| (area[1] + share * h + m).clamp(0.0, 1.0);
        Place {
            photo: photo.to_string(),
            area: [
                x(spot[0], -SPOT_MARGIN),
                y(spot[1], -SPOT_MARGIN),
                x(spot[2], SPOT_MARGIN),
                y(spot[3], SPOT_MARGIN),
            ],
        }
    }

    /// Whether the two are in the same photo and at least `OVERLAP` of the smaller lies in the
    /// other.
    pub fn overlaps(&self, other: &Place) -> bool {
        let size = |a: &regions::Area| (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
        let (a, b) = (&self.area, &other.area);
        let inter =
            (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        self.photo == other.photo && inter >= OVERLAP * size(a).min(size(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spot_is_placed_in_its_region_and_places_overlap_only_in_one_photo() {
        // the right half of a region that is the photo's bottom-left quadrant
        let p = Place::within("a.jpg", [0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]);
        let expect = [0.25 - SPOT_MARGIN, 0.5 - SPOT_MARGIN, 0.5 + SPOT_MARGIN, 1.0];
        assert!(p.area.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-6), "{p:?}");
        let whole = Place { photo: "a.jpg".into(), area: regions::WHOLE };
        assert!(p.overlaps(&whole) && whole.overlaps(&p), "a part overlaps the whole photo");
        let right = Place { photo: "a.jpg".into(), area: [0.5, 0.0, 1.0, 1.0] };
        assert!(!p.overlaps(&right), "{p:?} and {right:?} share only their margin");
        let elsewhere = Place { photo: "b.jpg".into(), area: regions::WHOLE };
        assert!(!p.overlaps(&elsewhere), "another photo");
        let half_in = Place { photo: "a.jpg".into(), area: [0.1, 0.5, 0.4, 1.0] };
        assert!(p.overlaps(&half_in), "more than half of the smaller lies in the other");
    }

    #[test]
    fn a_photo_reference_is_written_and_read_back_as_photo_hash_region() {
        let inset = PhotoRef::region("a/b.jpg".into(), regions::INSET);
        assert_eq!(inset.to_string(), "a/b.jpg#inset");
        assert_eq!(PhotoRef::parse("a/b.jpg#inset"), inset);
        assert_eq!(PhotoRef::parse("a.jpg#top-left").region, Some("top-left"));
        let whole = PhotoRef::whole("https://x/y.jpg#frag".into());
        assert_eq!(PhotoRef::parse("https://x/y.jpg#frag"), whole, "not a region: the whole photo");
        assert_eq!(whole.to_string(), "https://x/y.jpg#frag");
    }
}
