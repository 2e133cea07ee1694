"""The study's segmentation on the ADE20K-layout photo set (benchmarks/demo_data/ade20k.py with
photos): 14 classes, class k = the k-th photo of benchmarks.demo_data.photos.PHOTOS (same order),
read by mmseg's generic BaseSegDataset (ADE20KDataset only accepts its own class names) with
ADE20K's suffixes and zero-label reduction. Everything else as the ADE20K study config.
"""
_base_ = ['./upernet_vit-tiny-d4_ade20k-64x64.py']
data_root = '{{$LITEVIT_ADE20K:data/photo_ade20k/ADEChallengeData2016}}'
photo_classes = dict(
    classes=('astronaut', 'brick', 'camera', 'chelsea', 'coffee', 'coins', 'grass', 'gravel',
             'hubble_deep_field', 'ihc', 'moon', 'motorcycle', 'retina', 'rocket'),
    palette=[[191, 77, 77], [242, 125, 36], [191, 175, 77], [183, 242, 36], [109, 191, 77],
             [36, 242, 66], [77, 191, 142], [36, 242, 242], [77, 142, 191], [36, 66, 242],
             [109, 77, 191], [183, 36, 242], [191, 77, 175], [242, 36, 125]])
photo_dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=photo_classes,
                     img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
model = dict(decode_head=dict(num_classes=14), auxiliary_head=dict(num_classes=14))
train_dataloader = dict(dataset=photo_dataset)
val_dataloader = dict(dataset=photo_dataset)
test_dataloader = val_dataloader
